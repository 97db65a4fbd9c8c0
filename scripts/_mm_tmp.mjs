import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import {setThreadsCount, getThreadsCount} from '@tensorflow/tfjs-backend-wasm';
const threads = +(process.env.T||0); if (threads) setThreadsCount(threads);
await tf.setBackend(process.env.B||'wasm'); await tf.ready();
console.log(tf.getBackend(), typeof getThreadsCount==='function' ? getThreadsCount() : '?');
const D=3072, R=+(process.env.R||10000), Q=+(process.env.Q||100);
const refs = tf.randomUniform([R,D]); const q = tf.randomUniform([Q,D]);
for (const tb of [true]) {
  for (let i=0;i<3;i++){ const t0=performance.now(); const p=tf.matMul(q,refs,false,tb); await p.data(); p.dispose(); console.log('transB',tb,(performance.now()-t0).toFixed(1),'ms', (2*Q*R*D/((performance.now()-t0)/1000)/1e9).toFixed(2),'GFLOP/s'); }
}
const refsT = tf.transpose(refs);
for (let i=0;i<3;i++){ const t0=performance.now(); const p=tf.matMul(q,refsT); await p.data(); p.dispose(); console.log('pre-T',(performance.now()-t0).toFixed(1),'ms', (2*Q*R*D/((performance.now()-t0)/1000)/1e9).toFixed(2),'GFLOP/s'); }
