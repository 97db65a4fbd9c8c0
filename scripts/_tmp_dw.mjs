import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend('wasm'); await tf.ready();
const be = tf.backend();
const k = (n)=>tf.getKernel(n,'wasm').kernelFunc;
const B=8,H=32,W=32,C=64,K=3, Co=64;
const x = tf.randomNormal([B,H,W,C]); const dy = tf.randomNormal([B,H,W,Co]);
const heap = ()=>be.wasm.HEAPF32;
const off = (t)=>be.dataIdMap.get(t.dataId).memoryOffset>>2;
function time(name, f, n=5){ for(let i=0;i<2;i++){f();}
 const t0=performance.now(); for(let i=0;i<n;i++){f();} console.log(name, ((performance.now()-t0)/n).toFixed(2),'ms'); }
const ref = tf.tidy(()=>tf.transpose(tf.conv2d(tf.transpose(x,[3,1,2,0]), tf.transpose(dy,[1,2,0,3]), 1, [[0,0],[1,1],[1,1],[0,0]]),[1,2,0,3]));
// im2colT GEMM: xT=[Ci,H,W,B]; A[(kh,kw,ci),(oh,ow,b)]; dyT=[Ho,Wo,B,Co]
function dwGemm(){
  const xT = k('Transpose')({inputs:{x}, backend:be, attrs:{perm:[3,1,2,0]}});
  const dyT = k('Transpose')({inputs:{x:dy}, backend:be, attrs:{perm:[1,2,0,3]}});
  const Ho=H, Wo=W, pt=1, pl=1; const N=Ho*Wo*B;
  const A = be.makeOutput([K*K*C, N],'float32');
  const t0=performance.now();
  const h = heap(); const xo=off(xT), ao=off(A);
  const rowLen = Wo*B;
  for (let kh=0;kh<K;kh++) for(let kw=0;kw<K;kw++) for(let ci=0;ci<C;ci++){
    const arow = ao + ((kh*K+kw)*C+ci)*N;
    for (let oh=0; oh<Ho; oh++){
      const ih = oh+kh-pt; const dst = arow + oh*rowLen;
      if (ih<0||ih>=H){ h.fill(0,dst,dst+rowLen); continue; }
      // ow range valid: iw = ow+kw-pl in [0,W)
      const owLo = Math.max(0, pl-kw), owHi = Math.min(Wo, W+pl-kw);
      if (owLo>0) h.fill(0,dst,dst+owLo*B);
      if (owHi<Wo) h.fill(0,dst+owHi*B,dst+rowLen);
      const src = xo + ((ci*H+ih)*W + (owLo+kw-pl))*B;
      h.copyWithin(dst+owLo*B, src, src+(owHi-owLo)*B);
    }
  }
  const t1=performance.now();
  const a3 = {dataId:A.dataId, shape:[K*K*C,N], dtype:'float32'};
  const b3 = {dataId:dyT.dataId, shape:[N,Co], dtype:'float32'};
  const out = k('BatchMatMul')({inputs:{a:a3,b:b3}, backend:be, attrs:{transposeA:false,transposeB:false}});
  const t2=performance.now();
  globalThis.tt = [t1-t0, t2-t1];
  be.disposeData(xT.dataId); be.disposeData(dyT.dataId); be.disposeData(A.dataId);
  return out;
}
{ const o = dwGemm(); const r = tf.engine().makeTensorFromTensorInfo({...o, shape:[K,K,C,Co]}); console.log('maxdiff', tf.max(tf.abs(tf.sub(r, ref))).dataSync()[0], tf.max(tf.abs(ref)).dataSync()[0]); r.dispose(); }
time('dw gemm', ()=>{ const o=dwGemm(); be.disposeData(o.dataId); });
console.log('build, gemm', tt);
// w-only im2col + conv: xw[ci, h(padded), kw, (ow,b)], filter [Ho,1,(Wo*B),Co]
function dwConv(){
  const xT = k('Transpose')({inputs:{x}, backend:be, attrs:{perm:[3,1,2,0]}});
  const dyT = k('Transpose')({inputs:{x:dy}, backend:be, attrs:{perm:[1,2,0,3]}});
  const Ho=H, Wo=W, pt=1, pl=1; const Hp = H+2;
  const rowLen = Wo*B;
  const XW = be.makeOutput([C, Hp, K, rowLen],'float32');
  const t0=performance.now();
  const h = heap(); const xo=off(xT), ao=off(XW);
  for(let ci=0;ci<C;ci++) for(let hp=0;hp<Hp;hp++) for(let kw=0;kw<K;kw++){
    const dst = ao + ((ci*Hp+hp)*K+kw)*rowLen; const ih = hp-pt;
    if (ih<0||ih>=H){ h.fill(0,dst,dst+rowLen); continue; }
    const owLo = Math.max(0, pl-kw), owHi = Math.min(Wo, W+pl-kw);
    if (owLo>0) h.fill(0,dst,dst+owLo*B);
    if (owHi<Wo) h.fill(0,dst+owHi*B,dst+rowLen);
    const src = xo + ((ci*H+ih)*W + (owLo+kw-pl))*B;
    h.copyWithin(dst+owLo*B, src, src+(owHi-owLo)*B);
  }
  const t1=performance.now();
  const f = {dataId:dyT.dataId, shape:[Ho,1,rowLen,Co], dtype:'float32'};
  const out = k('Conv2D')({inputs:{x:XW, filter:f}, backend:be, attrs:{strides:1, pad:'valid', dilations:1, dataFormat:'NHWC', dimRoundingMode:undefined}});
  const t2=performance.now();
  const o2 = k('Transpose')({inputs:{x:out}, backend:be, attrs:{perm:[1,2,0,3]}});
  globalThis.tt = [t1-t0, t2-t1];
  be.disposeData(xT.dataId); be.disposeData(dyT.dataId); be.disposeData(XW.dataId); be.disposeData(out.dataId);
  return o2;
}
{ const o = dwConv(); const r = tf.engine().makeTensorFromTensorInfo(o); console.log('maxdiff', tf.max(tf.abs(tf.sub(r, ref))).dataSync()[0]); r.dispose(); }
time('dw conv', ()=>{ const o=dwConv(); be.disposeData(o.dataId); });
console.log('build, conv', tt);
