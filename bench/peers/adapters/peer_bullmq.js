// BullMQ adapter (Node), same protocol as common.py: READY / GO / RESULT, H and A lines.
// Queue.add one by one, bulk = Queue.addBulk per chunk; consume with BullMQ's Worker
// (concurrency from the harness). Jobs are added with removeOnComplete: true (BullMQ's docs
// recommend auto-removal; the default keeps every completed job forever).
'use strict';
const path = require('path');
const fs = require('fs');
const readline = require('readline');
const BULL = path.join(__dirname, '..', 'bullmq', 'node_modules', 'bullmq');
const { Queue, Worker } = require(BULL);

const IDLE_STOP = 1.0;
const START_GRACE = 15.0;

function parse(argv) {
  const a = { role: argv[0], items: 0, start: 0, bulk: false, chunk: 1000, concurrency: 50,
    out: '', variant: '' };
  for (let i = 1; i < argv.length; i++) {
    const k = argv[i].replace(/^--/, '');
    if (k === 'bulk') { a.bulk = true; continue; }
    const v = argv[++i];
    a[k] = ['items', 'start', 'chunk', 'concurrency'].includes(k) ? Number(v) : v;
  }
  return a;
}

function payload(seq) {
  const base = { seq, kind: 'bench', pad: '' };
  base.pad = 'x'.repeat(Math.max(100 - JSON.stringify(base).length, 0));
  return base;
}

const emit = (line) => process.stdout.write(line + '\n');
const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, as Python's time.monotonic_ns

const a = parse(process.argv.slice(2));
const u = new URL(a.url);
const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
const rl = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
rl.on('line', (l) => { if (waiter) { const w = waiter; waiter = null; w(l); } else lines.push(l); });
rl.on('close', () => { if (waiter) waiter(null); else lines.push(null); });
const nextLine = () => new Promise((res) => (lines.length ? res(lines.shift()) : (waiter = res)));
const versions = () => ({
  bullmq: require(path.join(BULL, 'package.json')).version,
  ioredis: require(path.join(__dirname, '..', 'bullmq', 'node_modules', 'ioredis', 'package.json')).version,
  node: process.version,
});
const jobOpts = { removeOnComplete: true, removeOnFail: 1000 };

async function main() {
  if (a.role === 'enqueue' || a.role === 'latency-producer') {
    const q = new Queue(a.queue, { connection, defaultJobOptions: jobOpts });
    await q.waitUntilReady();
    if (a.role === 'latency-producer') {
      emit('READY');
      for (;;) {
        const l = await nextLine();
        if (l === null) break;
        if (!l.trim() || l.trim() === 'GO') continue;
        const seq = Number(l);
        const t = now();
        await q.add('noop', payload(seq));
        emit(`A ${seq} ${t}`);
      }
      await q.close();
      return;
    }
    const items = [];
    for (let i = a.start; i < a.start + a.items; i++) items.push(payload(i));
    emit('READY');
    await nextLine();
    const t0 = performance.now();
    if (a.bulk) {
      for (let i = 0; i < items.length; i += a.chunk) {
        await q.addBulk(items.slice(i, i + a.chunk).map((d) => ({ name: 'noop', data: d })));
      }
    } else {
      for (const d of items) await q.add('noop', d);
    }
    const secs = (performance.now() - t0) / 1000;
    emit('RESULT ' + JSON.stringify({ seconds: secs, versions: versions() }));
    await q.close();
    return;
  }
  // consume / latency-consumer
  const latency = a.role === 'latency-consumer';
  const seqs = [];
  let first = 0n;
  let last = 0n;
  const worker = new Worker(a.queue, async (job) => {
    const t = now();
    if (latency) { emit(`H ${job.data.seq} ${t}`); return; }
    if (!seqs.length) first = t;
    seqs.push(job.data.seq);
    last = t;
  }, { connection, concurrency: a.concurrency, autorun: false });
  await worker.waitUntilReady();
  emit('READY');
  await nextLine();
  const go = now();
  const running = worker.run();
  if (latency) { await running; return; }
  await new Promise((res) => {
    const iv = setInterval(() => {
      const t = now();
      const idle = seqs.length ? Number(t - last) / 1e9 > IDLE_STOP
        : Number(t - go) / 1e9 > START_GRACE;
      if (idle) { clearInterval(iv); res(); }
    }, 50);
  });
  await worker.close();
  if (a.out) fs.writeFileSync(a.out, seqs.join('\n') + '\n');
  emit('RESULT ' + JSON.stringify({ handled: seqs.length, first_ns: Number(first),
    last_ns: Number(last), versions: versions(), concurrency: a.concurrency }));
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
