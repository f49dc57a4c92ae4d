'use strict';
// faye_auth.js <url> <token|-> <channel> <publisher-server-token|->
// A stock Faye client whose extension puts a token in ext on handshake and subscribe
// (Faye's documented auth pattern). Subscribes to <channel>; if that succeeds and a
// publisher token is given, a second client publishes there with the token in ext and
// this one reports what it received.
const faye = require('faye');
const { emit, run, waitFor, settle } = require('./lib');

const [url, token, channel, pubToken] = process.argv.slice(2);

function client(tok) {
  const c = new faye.Client(url, { timeout: 5, retry: 1 });
  c.disable('autodisconnect');
  if (tok && tok !== '-') {
    c.addExtension({
      outgoing(message, callback) {
        if (['/meta/handshake', '/meta/subscribe'].includes(message.channel) || !message.channel.startsWith('/meta/')) {
          message.ext = Object.assign({}, message.ext, { token: tok, trace: 'kept' });
        }
        callback(message);
      },
    });
  }
  return c;
}

run(async () => {
  const sub = client(token);
  const got = [];
  const result = await settle(sub.subscribe(channel, (data) => got.push(data)), 8000, 'subscribe');
  emit('subscribed', result);
  if (result.ok && pubToken && pubToken !== '-') {
    const pub = client(pubToken);
    const published = await settle(pub.publish(channel, { hello: 'owner' }), 8000, 'publish');
    emit('published', published);
    await waitFor(() => got.length > 0, 8000, 'delivery');
    emit('received', { data: got });
    pub.disconnect();
  }
  sub.disconnect();
}, 30000);
