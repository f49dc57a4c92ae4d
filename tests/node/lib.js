'use strict';
// Plumbing shared by the driver scripts. Each script prints one JSON object per line
// ({"event": ...}) for the Python test to assert on, ends with {"event": "done"}, and
// exits by itself: a hard deadline kills it with {"event": "timeout"} if a step hangs.

function emit(event, fields) {
  process.stdout.write(JSON.stringify(Object.assign({ event: event }, fields || {})) + '\n');
}

function describe(err) {
  if (err && typeof err === 'object') {
    return { message: String(err.message), code: err.code === undefined ? null : err.code,
             params: err.params === undefined ? null : err.params, stack: err.stack || null };
  }
  return { message: String(err), code: null, params: null, stack: null };
}

// Runs `body` and exits: 0 when it resolves, 1 when it throws, 2 at the deadline.
function run(body, deadlineMs) {
  const timer = setTimeout(() => {
    emit('timeout', { after_ms: deadlineMs });
    process.exit(2);
  }, deadlineMs);
  Promise.resolve()
    .then(body)
    .then(
      () => { clearTimeout(timer); emit('done'); process.exit(0); },
      (err) => { clearTimeout(timer); emit('error', describe(err)); process.exit(1); },
    );
}

// Resolves once predicate() holds; rejects with `label` after `ms`.
function waitFor(predicate, ms, label) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      let ok = false;
      try { ok = predicate(); } catch (err) { reject(err); return; }
      if (ok) { resolve(); return; }
      if (Date.now() - started > ms) { reject(new Error('timed out waiting for ' + label)); return; }
      setTimeout(tick, 10);
    };
    tick();
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Settles a thenable into {ok, error} so a rejected Bayeux promise can be reported, not thrown.
function settle(thenable, ms, label) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out waiting for ' + label)), ms);
    thenable.then(
      () => { clearTimeout(timer); resolve({ ok: true, error: null }); },
      (err) => { clearTimeout(timer); resolve({ ok: false, error: describe(err) }); },
    );
  });
}

function args(argv) {
  const out = { _: [] };
  for (const a of argv) {
    const m = /^--([^=]+)=(.*)$/.exec(a);
    if (m) out[m[1]] = m[2]; else out._.push(a);
  }
  return out;
}

module.exports = { emit, run, waitFor, sleep, settle, args, describe };
