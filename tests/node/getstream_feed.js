'use strict';
// getstream_feed.js <base-url> <api-key> <api-secret> <app-id>
// Stream's own JS client (npm `getstream`) pointed at this server: REST under /api/,
// realtime over Faye at /bayeux. A server-side client and a user-token client each
// subscribe to user:1 with feed.subscribe(); an activity added over REST must reach both.
// A user token for user 2 must be refused on user:1's channel.
const stream = require('getstream');
const { emit, run, waitFor, settle } = require('./lib');

const [base, key, secret, appId] = process.argv.slice(2);
const options = { urlOverride: { api: base + '/api/' }, fayeUrl: base + '/bayeux', timeout: 5000 };

run(async () => {
  const server = stream.connect(key, secret, appId, options);
  const user = stream.connect(key, server.createUserToken('1'), appId, options);
  const intruder = stream.connect(key, server.createUserToken('2'), appId, options);
  const got = { server: [], user: [] };

  const viaServer = await settle(server.feed('user', '1').subscribe((m) => got.server.push(m)), 8000, 'server subscribe');
  const viaUser = await settle(user.feed('user', '1').subscribe((m) => got.user.push(m)), 8000, 'user subscribe');
  const viaIntruder = await settle(intruder.feed('user', '1').subscribe(() => {}), 8000, 'intruder subscribe');
  emit('subscribed', { server: viaServer, user: viaUser, intruder: viaIntruder });

  const added = await server.feed('user', '1').addActivity({ actor: 'user:1', verb: 'post', object: 'photo:9', foreign_id: 'post:9' });
  emit('added', { id: added.id });
  await waitFor(() => got.server.length > 0 && got.user.length > 0, 8000, 'realtime updates');
  emit('received', { server: got.server, user: got.user });
  for (const c of [server, user, intruder]) if (c.fayeClient) c.fayeClient.disconnect();
}, 30000);
