/**
 * Loading copy-detection models from disk (no tfjs-node): a tfjs-layers model saved by the test
 * with a file-writing save handler, and a TF GraphDef written by hand in the tfjs graph-model
 * JSON format, both sharded; descriptors are compared with the same math done with tf ops.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import * as tfl from '@tensorflow/tfjs-layers';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { Generator, InputError, NonFiniteError, ShapeError } from '@diffmem/core';
import { GraphModelEmbedder, LayersModelEmbedder, ModelEmbedder } from '../model_embedder.js';
import { detectModelFormat, fileSystemModelHandler, weightSpecByteLength } from '../model_io.js';
import { preprocessImages } from '../preprocess.js';
import { l2NormalizeRows } from '../types.js';

let root: string;
beforeAll(async () => {
  await tf.setBackend('wasm');
  await tf.ready();
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'diffmem-embedder-io-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Noise images with a per-image, per-channel gain and offset, so their descriptors differ. */
function images(n: number, h: number, w: number, seed: number): tf.Tensor4D {
  const g = new Generator(seed);
  const u = g.uniformArray(n * h * w * 3);
  const gain = g.uniformArray(n * 3);
  const offset = g.uniformArray(n * 3);
  for (let i = 0; i < u.length; i++) {
    const k = Math.floor(i / (h * w * 3)) * 3 + (i % 3);
    const a = 0.2 + 0.8 * (gain[k] as number);
    u[i] = (1 - a) * (offset[k] as number) + a * (u[i] as number);
  }
  return tf.tensor4d(u, [n, h, w, 3]);
}

/** Rows are unit length and pairwise distinct (so a permuted or constant output would fail). */
function expectUnitDistinctRows(e: tf.Tensor2D): void {
  const rows = e.arraySync();
  for (const r of rows) expect(Math.hypot(...r)).toBeCloseTo(1, 5);
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      const d = Math.hypot(...(rows[i] as number[]).map((v, k) => v - ((rows[j] as number[])[k] as number)));
      expect(d).toBeGreaterThan(1e-2);
    }
  }
}

function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] as number);
}

/** Splits `data` into shards cut at the given fractions (not at tensor boundaries, as the converter does). */
function writeShards(dir: string, data: ArrayBuffer, cuts: number[]): string[] {
  const bounds = [0, ...cuts.map((f) => Math.round(f * data.byteLength)), data.byteLength];
  const n = bounds.length - 1;
  return Array.from({ length: n }, (_, i) => {
    const name = `group1-shard${i + 1}of${n}.bin`;
    fs.writeFileSync(path.join(dir, name), Buffer.from(data.slice(bounds[i] as number, bounds[i + 1] as number)));
    return name;
  });
}

function freshDir(name: string): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

// ---------------------------------------------------------------------------------------------
// (a) a tfjs-layers model: conv 3×3/2 → ReLU → global average pool → dense, any input size

function buildLayersModel(seed: number, pooled = true): tfl.LayersModel {
  const m = tfl.sequential();
  m.add(tfl.layers.conv2d({ inputShape: [null, null, 3], filters: 8, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu' }));
  if (pooled) {
    m.add(tfl.layers.globalAveragePooling2d({}));
    m.add(tfl.layers.dense({ units: 6 }));
  }
  // deterministic weights from the seeded generator (the layers' own initialisers are unseeded)
  const g = new Generator(seed);
  m.setWeights(m.getWeights().map((w) => tf.tidy(() => tf.mul(tf.tensor(g.normalArray(w.size), w.shape), 0.5))));
  return m;
}

/** Saves through `tf.io.withSaveHandler` into model.json + shards, as tensorflowjs writes them. */
async function saveLayersModel(m: tfl.LayersModel, dir: string, cuts: number[]): Promise<void> {
  await m.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = tf.io.CompositeArrayBuffer.join(artifacts.weightData as tf.io.WeightData);
      const paths = writeShards(dir, data, cuts);
      const json = {
        format: 'layers-model',
        generatedBy: 'diffmem test',
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths, weights: artifacts.weightSpecs }],
      };
      fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: data.byteLength } };
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// (b) a TF GraphDef in tfjs graph-model JSON: Placeholder → Conv2D → BiasAdd → Relu → Mean → MatMul

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const FLOAT = { type: 'DT_FLOAT' };
const dims = (shape: number[]): { dim: Array<{ size: string }> } => ({ dim: shape.map((d) => ({ size: String(d) })) });
const constNode = (name: string, shape: number[], dtype: 'DT_FLOAT' | 'DT_INT32' = 'DT_FLOAT'): object => ({
  name,
  op: 'Const',
  attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: dims(shape) } } },
});

interface GraphWeights {
  filter: Float32Array; // [3,3,3,8]
  bias: Float32Array; // [8]
  kernel: Float32Array; // [8,6]
}

function graphWeights(seed: number): GraphWeights {
  const g = new Generator(seed);
  return { filter: g.normalArray(3 * 3 * 3 * 8), bias: g.normalArray(8), kernel: g.normalArray(8 * 6) };
}

interface GraphOptions {
  /** Declared input [N,H,W,3] (or [N,3,H,W] with nchw), written as the Placeholder's shape attr. */
  input: number[];
  /** Declare the input only in the SavedModel signature (as some converters do), not on the node. */
  signatureOnly?: boolean;
  /** NCHW input: a Transpose to NHWC first (what ONNX → TF exports of PyTorch models do). */
  nchw?: boolean;
  /** Stop at the ReLU (a 4-D output, not [N, D]). */
  noPool?: boolean;
  cuts?: number[];
}

/** Writes model.json (graph-model format) + shards; returns the model.json path. */
function writeGraphModel(dir: string, w: GraphWeights, o: GraphOptions): string {
  const placeholderAttr: Record<string, unknown> = { dtype: FLOAT };
  if (!o.signatureOnly) placeholderAttr['shape'] = { shape: dims(o.input) };
  const nodes: object[] = [{ name: 'images', op: 'Placeholder', attr: placeholderAttr }];
  let x = 'images';
  if (o.nchw) {
    nodes.push(constNode('to_nhwc/perm', [4], 'DT_INT32'));
    nodes.push({ name: 'to_nhwc', op: 'Transpose', input: ['images', 'to_nhwc/perm'], attr: { T: FLOAT, Tperm: { type: 'DT_INT32' } } });
    x = 'to_nhwc';
  }
  nodes.push(
    constNode('conv/filter', [3, 3, 3, 8]),
    constNode('conv/bias', [8]),
    {
      name: 'conv/Conv2D',
      op: 'Conv2D',
      input: [x, 'conv/filter'],
      attr: {
        T: FLOAT,
        strides: { list: { i: ['1', '2', '2', '1'] } },
        padding: { s: b64('SAME') },
        data_format: { s: b64('NHWC') },
        dilations: { list: { i: ['1', '1', '1', '1'] } },
      },
    },
    { name: 'conv/BiasAdd', op: 'BiasAdd', input: ['conv/Conv2D', 'conv/bias'], attr: { T: FLOAT, data_format: { s: b64('NHWC') } } },
    { name: 'conv/Relu', op: 'Relu', input: ['conv/BiasAdd'], attr: { T: FLOAT } },
  );
  const weights: tf.io.WeightsManifestEntry[] = [];
  const arrays: Array<Float32Array | Int32Array> = [];
  if (o.nchw) {
    weights.push({ name: 'to_nhwc/perm', shape: [4], dtype: 'int32' });
    arrays.push(new Int32Array([0, 2, 3, 1]));
  }
  weights.push({ name: 'conv/filter', shape: [3, 3, 3, 8], dtype: 'float32' }, { name: 'conv/bias', shape: [8], dtype: 'float32' });
  arrays.push(w.filter, w.bias);
  if (!o.noPool) {
    nodes.push(
      constNode('pool/axes', [2], 'DT_INT32'),
      { name: 'pool/Mean', op: 'Mean', input: ['conv/Relu', 'pool/axes'], attr: { T: FLOAT, Tidx: { type: 'DT_INT32' }, keep_dims: { b: false } } },
      constNode('fc/kernel', [8, 6]),
      { name: 'fc/MatMul', op: 'MatMul', input: ['pool/Mean', 'fc/kernel'], attr: { T: FLOAT, transpose_a: { b: false }, transpose_b: { b: false } } },
      { name: 'descriptor', op: 'Identity', input: ['fc/MatMul'], attr: { T: FLOAT } },
    );
    weights.push({ name: 'pool/axes', shape: [2], dtype: 'int32' }, { name: 'fc/kernel', shape: [8, 6], dtype: 'float32' });
    arrays.push(new Int32Array([1, 2]), w.kernel);
  }
  const data = tf.io.concatenateArrayBuffers(arrays.map((a) => a.buffer as ArrayBuffer));
  const paths = writeShards(dir, data, o.cuts ?? [0.3, 0.55]);
  const output = o.noPool ? 'conv/Relu' : 'descriptor';
  const json: Record<string, unknown> = {
    format: 'graph-model',
    generatedBy: '2.15.0',
    convertedBy: 'diffmem test (hand-written GraphDef)',
    modelTopology: { node: nodes, library: {}, versions: { producer: 1645 } },
    weightsManifest: [{ paths, weights }],
  };
  if (o.signatureOnly) {
    json['signature'] = {
      inputs: { 'images:0': { name: 'images:0', dtype: 'DT_FLOAT', tensorShape: dims(o.input) } },
      outputs: { [`${output}:0`]: { name: `${output}:0`, dtype: 'DT_FLOAT' } },
    };
  }
  const file = path.join(dir, 'model.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

/** The graph's math with tf ops directly, on an already preprocessed NHWC batch. */
function graphMath(x: tf.Tensor4D, w: GraphWeights): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.relu(tf.add(tf.conv2d(x, tf.tensor4d(w.filter, [3, 3, 3, 8]), 2, 'same'), tf.tensor1d(w.bias)));
    return tf.matMul(tf.mean(y, [1, 2]) as tf.Tensor2D, tf.tensor2d(w.kernel, [8, 6]));
  });
}

// ---------------------------------------------------------------------------------------------

describe('LayersModelEmbedder from disk', () => {
  it('loads a saved conv→pool→dense model (3 shards) and matches the in-memory model after the sscd preset', async () => {
    const dir = freshDir('layers');
    const model = buildLayersModel(11);
    await saveLayersModel(model, dir, [0.2, 0.7]);
    expect(fs.readdirSync(dir).sort()).toEqual(['group1-shard1of3.bin', 'group1-shard2of3.bin', 'group1-shard3of3.bin', 'model.json']);
    const x = images(5, 60, 80, 1); // short edge 60 → 288, long edge 384
    const before = tf.memory().numTensors;
    const emb = await LayersModelEmbedder.load(path.join(dir, 'model.json'), { name: 'tiny-layers', preprocess: 'sscd', batchSize: 2 });
    expect(emb.dim).toBe(6); // read from the declared output [null, 6], no probe
    expect(emb.inputLayout).toBe('NHWC');
    const loaded = tf.memory().numTensors;
    const e = emb.embed(x);
    expect(tf.memory().numTensors).toBe(loaded + 1);
    expect(e.shape).toEqual([5, 6]);
    expectUnitDistinctRows(e);
    const ref = tf.tidy(() => l2NormalizeRows(model.predict(preprocessImages(x, 'sscd')) as tf.Tensor2D));
    expect(maxAbsDiff(e, ref)).toBeLessThan(1e-5);
    // the same model through a directory path and a file:// URL
    const viaDir = await LayersModelEmbedder.load(dir, { name: 'tiny-layers', preprocess: 'sscd' });
    const viaUrl = await LayersModelEmbedder.load(pathToFileURL(path.join(dir, 'model.json')).href, { name: 'tiny-layers', preprocess: 'sscd' });
    const x2 = tf.slice(x, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const [e1, e2] = [viaDir.embed(x2), viaUrl.embed(x2)];
    expect(tf.tidy(() => maxAbsDiff(e1, tf.slice(ref, [0, 0], [2, -1])))).toBeLessThan(1e-5);
    expect(maxAbsDiff(e1, e2)).toBe(0);
    tf.dispose([e, e1, e2, x2, ref]);
    for (const m of [emb, viaDir, viaUrl]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
    model.dispose();
  });

  it('rejects a layers model whose declared output is not [N, D] at load, freeing its weights', async () => {
    const dir = freshDir('layers-nopool');
    const model = buildLayersModel(12, false);
    await saveLayersModel(model, dir, [0.5]);
    model.dispose();
    const before = tf.memory().numTensors;
    const err = await LayersModelEmbedder.load(dir, { name: 'feature-map', preprocess: 'amg' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as Error).message).toMatch(/model "feature-map" declares output \[\*,\*,\*,8\], but an embedder needs \[N, D\]/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('GraphModelEmbedder from disk (hand-written GraphDef)', () => {
  const w = graphWeights(21);

  it('loads Placeholder→Conv2D→Relu→Mean→MatMul (float + int32 weights, 3 shards) and matches tf ops under the dcr preset', async () => {
    const file = writeGraphModel(freshDir('graph'), w, { input: [-1, 224, 224, 3] });
    const x = images(5, 40, 52, 2); // → short edge 256 (256×332) → centre crop 224
    const before = tf.memory().numTensors;
    const emb = await GraphModelEmbedder.load(file, { name: 'tiny-graph', preprocess: 'dcr', batchSize: 2 });
    expect(emb.inputShape).toEqual([null, 224, 224, 3]);
    const loaded = tf.memory().numTensors;
    const e = emb.embed(x);
    expect(tf.memory().numTensors).toBe(loaded + 1);
    expect(e.shape).toEqual([5, 6]);
    expect(emb.dim).toBe(6);
    expectUnitDistinctRows(e);
    const ref = tf.tidy(() => l2NormalizeRows(graphMath(preprocessImages(x, 'dcr'), w)));
    expect(maxAbsDiff(e, ref)).toBeLessThan(1e-5);
    // batching does not change the result
    const one = await GraphModelEmbedder.load(file, { name: 'tiny-graph', preprocess: 'dcr', batchSize: 16 });
    const e16 = one.embed(x);
    expect(maxAbsDiff(e, e16)).toBeLessThan(1e-6);
    tf.dispose([e, e16, ref]);
    emb.dispose();
    one.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('detects an NCHW input ([*,3,320,320], an ONNX-style export) and feeds it the sscd-320 preset transposed', async () => {
    const file = writeGraphModel(freshDir('graph-nchw'), w, { input: [-1, 3, 320, 320], nchw: true, cuts: [0.5] });
    const x = images(2, 30, 45, 3);
    const before = tf.memory().numTensors;
    const emb = await GraphModelEmbedder.load(file, { name: 'nchw-graph', preprocess: 'sscd-320' });
    expect(emb.inputLayout).toBe('NCHW');
    const e = emb.embed(x);
    const ref = tf.tidy(() => l2NormalizeRows(graphMath(preprocessImages(x, 'sscd-320'), w)));
    expect(maxAbsDiff(e, ref)).toBeLessThan(1e-5);
    tf.dispose([e, ref]);
    emb.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });

  it('raises ShapeError naming expected and given shapes before running a model that expects 64×64×3', async () => {
    // the input shape is declared only in the signature here, as some exports do
    const file = writeGraphModel(freshDir('graph-64'), w, { input: [-1, 64, 64, 3], signatureOnly: true });
    const before = tf.memory().numTensors;
    // fixed-size preset (amg squashes to 224²): rejected at load, weights freed
    const err = await GraphModelEmbedder.load(file, { name: 'small-input', preprocess: 'amg' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ShapeError);
    expect((err as Error).message).toMatch(/model "small-input" expects input \[\*,64,64,3\] \(NHWC\) but preprocessing "amg" produced \[\*,224,224,3\]/);
    expect((err as ShapeError).details).toMatchObject({ expected: [null, 64, 64, 3], actual: [null, 224, 224, 3] });
    expect(tf.memory().numTensors).toBe(before);
    // nothing runs: the model's predict is never called
    const gm = await loadGraphModel(fileSystemModelHandler(file));
    let calls = 0;
    const predict = gm.predict.bind(gm);
    gm.predict = (...args: Parameters<typeof gm.predict>) => {
      calls++;
      return predict(...args);
    };
    expect(() => new GraphModelEmbedder(gm, { name: 'small-input', preprocess: 'dcr' })).toThrow(/\[\*,224,224,3\]/);
    // size-dependent preset (sscd short edge 288): rejected per call, from the preset arithmetic
    const emb = new GraphModelEmbedder(gm, { name: 'small-input', preprocess: 'sscd' });
    const x = images(2, 64, 64, 4);
    const mid = tf.memory().numTensors;
    expect(() => emb.embed(x)).toThrow(/expects input \[\*,64,64,3\] \(NHWC\) but preprocessing "sscd" produced \[2,288,288,3\]/);
    expect(calls).toBe(0);
    expect(tf.memory().numTensors).toBe(mid);
    // the right preprocessing runs fine
    const ok = new GraphModelEmbedder(gm, { name: 'small-input', preprocess: { resize: { kind: 'exact', height: 64, width: 64 }, centerCrop: null, mean: null, std: null } });
    const e = ok.embed(x);
    expect(calls).toBe(1);
    const ref = tf.tidy(() => l2NormalizeRows(graphMath(x, w)));
    expect(maxAbsDiff(e, ref)).toBeLessThan(1e-5);
    tf.dispose([e, ref, x]);
    gm.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('raises ShapeError when the graph output is not [N, D] (a 4-D feature map)', async () => {
    const file = writeGraphModel(freshDir('graph-nopool'), w, { input: [-1, 224, 224, 3], noPool: true, cuts: [0.5] });
    const x = images(2, 32, 32, 5);
    const before = tf.memory().numTensors;
    const emb = await GraphModelEmbedder.load(file, { name: 'feature-map', preprocess: 'amg' });
    const loaded = tf.memory().numTensors;
    expect(() => emb.embed(x)).toThrow(ShapeError);
    expect(() => emb.embed(x)).toThrow(/model "feature-map" must return \[2, D\] descriptors for a batch of 2, got \[2,112,112,8\]/);
    expect(tf.memory().numTensors).toBe(loaded);
    emb.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('non-finite input and output', () => {
  const w = graphWeights(31);

  it('NaN images → NonFiniteError naming the image, before the model runs', async () => {
    const file = writeGraphModel(freshDir('graph-nan'), w, { input: [-1, 224, 224, 3], cuts: [0.5] });
    const emb = await GraphModelEmbedder.load(file, { name: 'tiny-graph', preprocess: 'amg' });
    const good = images(3, 20, 20, 6);
    const bad = tf.tidy(() => {
      const mask = tf.tensor4d(Array.from({ length: 3 * 20 * 20 * 3 }, (_, i) => (i === 2 * 1200 + 7 ? 1 : 0)), [3, 20, 20, 3]);
      return tf.where(tf.cast(mask, 'bool'), tf.fill(good.shape, NaN), good) as tf.Tensor4D;
    });
    const before = tf.memory().numTensors;
    expect(() => emb.embed(bad)).toThrow(NonFiniteError);
    expect(() => emb.embed(bad)).toThrow(/images contains 1 non-finite value.*item 2/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([good, bad]);
    emb.dispose();
  });

  it('a model producing NaN descriptors → NonFiniteError naming the model', () => {
    const emb = new ModelEmbedder((x: tf.Tensor4D) => tf.div(tf.mean(x, [1, 2]), 0 * 0), { name: 'broken', preprocess: 'none' });
    const x = tf.zeros([2, 8, 8, 3]) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    expect(() => emb.embed(x)).toThrow(/descriptors of model "broken" contains/);
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});

describe('fileSystemModelHandler errors', () => {
  const w = graphWeights(41);
  let file: string;
  let layersDir: string;
  beforeAll(async () => {
    file = writeGraphModel(freshDir('graph-errors'), w, { input: [-1, 224, 224, 3], cuts: [0.4, 0.8] });
    layersDir = freshDir('layers-errors');
    const m = buildLayersModel(42);
    await saveLayersModel(m, layersDir, [0.5]);
    m.dispose();
  });
  const opts = { name: 'x', preprocess: 'dcr' } as const;
  const code = (c: string) => expect.objectContaining({ name: 'InputError', code: c });

  function variant(name: string, edit: (dir: string) => void): string {
    const dir = freshDir(name);
    for (const f of fs.readdirSync(path.dirname(file))) fs.copyFileSync(path.join(path.dirname(file), f), path.join(dir, f));
    edit(dir);
    return path.join(dir, 'model.json');
  }

  it('missing model.json, corrupt JSON, not a model', async () => {
    const before = tf.memory().numTensors;
    await expect(GraphModelEmbedder.load(path.join(root, 'nowhere', 'model.json'), opts)).rejects.toThrow(code('MODEL_NOT_FOUND'));
    await expect(GraphModelEmbedder.load(path.join(root, 'nowhere', 'model.json'), opts)).rejects.toThrow(/nowhere\/model.json/);
    const corrupt = variant('corrupt', (d) => fs.writeFileSync(path.join(d, 'model.json'), '{"format": "graph-model", "modelTopology": {'));
    await expect(GraphModelEmbedder.load(corrupt, opts)).rejects.toThrow(code('MODEL_JSON_INVALID'));
    await expect(GraphModelEmbedder.load(corrupt, opts)).rejects.toThrow(/corrupt\/model.json is not valid JSON/);
    const notModel = variant('not-model', (d) => fs.writeFileSync(path.join(d, 'model.json'), '{"hello": 1}'));
    await expect(LayersModelEmbedder.load(notModel, opts)).rejects.toThrow(/has no modelTopology/);
    const badManifest = variant('bad-manifest', (d) => {
      const j = JSON.parse(fs.readFileSync(path.join(d, 'model.json'), 'utf8'));
      j.weightsManifest = [{ paths: ['group1-shard1of3.bin'] }];
      fs.writeFileSync(path.join(d, 'model.json'), JSON.stringify(j));
    });
    await expect(GraphModelEmbedder.load(badManifest, opts)).rejects.toThrow(/weightsManifest group 0 has no weights list/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a missing shard and shards of the wrong byte length', async () => {
    const before = tf.memory().numTensors;
    const missing = variant('missing-shard', (d) => fs.rmSync(path.join(d, 'group1-shard2of3.bin')));
    const err = (await GraphModelEmbedder.load(missing, opts).catch((e: unknown) => e)) as InputError;
    expect(err).toBeInstanceOf(InputError);
    expect(err.code).toBe('MODEL_WEIGHTS_MISSING');
    expect(err.message).toMatch(/group1-shard2of3\.bin/);
    const short = variant('short-shard', (d) => {
      const p = path.join(d, 'group1-shard3of3.bin');
      fs.writeFileSync(p, fs.readFileSync(p).subarray(0, -4));
    });
    const total = 4 * (3 * 3 * 3 * 8 + 8 + 2 + 8 * 6);
    await expect(GraphModelEmbedder.load(short, opts)).rejects.toThrow(code('MODEL_WEIGHTS_SIZE'));
    await expect(GraphModelEmbedder.load(short, opts)).rejects.toThrow(new RegExp(`needs ${total} bytes for its 4 weight\\(s\\) but its shards hold ${total - 4}`));
    const long = variant('long-shard', (d) => fs.appendFileSync(path.join(d, 'group1-shard1of3.bin'), Buffer.alloc(1)));
    await expect(GraphModelEmbedder.load(long, opts)).rejects.toThrow(code('MODEL_WEIGHTS_SIZE'));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a layers model given to the graph loader and vice versa', async () => {
    const before = tf.memory().numTensors;
    await expect(GraphModelEmbedder.load(layersDir, opts)).rejects.toThrow(code('MODEL_FORMAT_MISMATCH'));
    await expect(GraphModelEmbedder.load(layersDir, opts)).rejects.toThrow(/is a TF\.js layers model .* but a graph model was expected/);
    await expect(LayersModelEmbedder.load(file, opts)).rejects.toThrow(code('MODEL_FORMAT_MISMATCH'));
    await expect(LayersModelEmbedder.load(file, opts)).rejects.toThrow(/is a TF\.js graph model .* but a layers model was expected/);
    // an IOHandler is checked too (format inferred from the topology when the field is absent)
    const json = JSON.parse(fs.readFileSync(file, 'utf8'));
    delete json.format;
    expect(detectModelFormat(json)).toBe('graph-model');
    await expect(LayersModelEmbedder.load(tf.io.fromMemory({ modelTopology: json.modelTopology }), opts)).rejects.toThrow(code('MODEL_FORMAT_MISMATCH'));
    expect(tf.memory().numTensors).toBe(before);
  });

  it('sizes manifest entries by their stored (quantised) dtype', () => {
    expect(weightSpecByteLength({ name: 'a', shape: [3, 4], dtype: 'float32' })).toBe(48);
    expect(weightSpecByteLength({ name: 'b', shape: [3, 4], dtype: 'float32', quantization: { dtype: 'uint8', min: 0, scale: 1 } })).toBe(12);
    expect(weightSpecByteLength({ name: 'c', shape: [5], dtype: 'float32', quantization: { dtype: 'float16' } })).toBe(10);
    expect(weightSpecByteLength({ name: 'd', shape: [], dtype: 'int32' })).toBe(4);
    expect(weightSpecByteLength({ name: 'e', shape: [2], dtype: 'string' })).toBeNull();
  });
});
