import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend('wasm'); await tf.ready();
const B=8,H=32,W=32,C=64,K=3;
const x = tf.randomNormal([B,H,W,C]); const w = tf.randomNormal([K,K,C,C]); const dy = tf.randomNormal([B,H,W,C]);
function time(name, f, n=5){ for(let i=0;i<2;i++){const r=f(); r.dispose();}
 const t0=performance.now(); for(let i=0;i<n;i++){const r=f(); r.dispose();} console.log(name, ((performance.now()-t0)/n).toFixed(2),'ms'); }
time('fwd', ()=>tf.conv2d(x,w,1,'same'));
time('fwd explicit', ()=>tf.conv2d(x,w,1,[[0,0],[1,1],[1,1],[0,0]]));
time('dx conv', ()=>tf.tidy(()=>{ const wr = tf.reverse(tf.transpose(w,[0,1,3,2]),[0,1]); return tf.conv2d(dy,wr,1,[[0,0],[1,1],[1,1],[0,0]]);}));
time('transpose x 3120', ()=>tf.transpose(x,[3,1,2,0]));
time('transpose dy 1203', ()=>tf.transpose(dy,[1,2,0,3]));
time('dw conv trick', ()=>tf.tidy(()=>{ const xt=tf.transpose(x,[3,1,2,0]); const dyt=tf.transpose(dy,[1,2,0,3]);
  const r = tf.conv2d(xt, dyt, 1, [[0,0],[1,1],[1,1],[0,0]]); return tf.transpose(r,[1,2,0,3]); }), 3);
// im2colT approach
time('pad+transpose', ()=>tf.tidy(()=>tf.transpose(tf.pad(x,[[0,0],[1,1],[1,1],[0,0]]),[3,0,1,2])));
time('dw im2colT mm', ()=>tf.tidy(()=>{
  const Hp=H+2, Wp=W+2; const Next=B*Hp*Wp;
  const xT = tf.reshape(tf.transpose(tf.pad(x,[[0,0],[1,1],[1,1],[0,0]]),[3,0,1,2]),[C, Next]);
  const xT2 = tf.pad(xT, [[0,0],[0, 2*Wp+2]]);
  const parts=[]; for(let kh=0;kh<K;kh++)for(let kw=0;kw<K;kw++){ parts.push(tf.slice(xT2,[0,kh*Wp+kw],[C,Next])); }
  const A = tf.concat(parts,0);
  const dye = tf.reshape(tf.pad(dy,[[0,0],[0,2],[0,2],[0,0]]),[Next, C]);
  return tf.reshape(tf.matMul(A, dye),[K,K,C,C]);
}),3);
time('dw im2colT mm only', ()=>tf.tidy(()=>{ const A=tf.randomNormal([576, 8*34*34]); const b=tf.randomNormal([8*34*34,64]); const t0=performance.now(); const r= tf.matMul(A,b); console.log('  mm', performance.now()-t0); return r;}),2);
time('mm swap', ()=>tf.tidy(()=>{ const A=tf.randomNormal([64, 8*34*34]); const b=tf.randomNormal([8*34*34,576]); const t0=performance.now(); const r= tf.matMul(A,b); console.log('  mm', performance.now()-t0); return r;}),2);
