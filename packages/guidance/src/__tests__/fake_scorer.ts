import * as tf from '@tensorflow/tfjs-core';
import type { SimilarityContext, SimilarityEvaluation, SimilarityRequest, SimilarityScorer } from '../index.js';

/** A scripted σ oracle for control-flow tests: σ comes from `sigmaOf(call, ctx, request)`, ∇σ = `gradValue` everywhere. */
export class FakeScorer implements SimilarityScorer {
  readonly name = 'fake';
  readonly input = 'x0' as const;
  calls: Array<{ timestep: number; grad: boolean }> = [];
  constructor(
    readonly metric: 'nl2' | 'cosine',
    private readonly sigmaOf: (call: number, ctx: SimilarityContext, request: SimilarityRequest, n: number) => number[],
    readonly labels: Int32Array | null = null,
    readonly size = 100,
    private readonly gradValue = 0,
  ) {}

  evaluate(input: tf.Tensor4D, ctx: SimilarityContext, request: SimilarityRequest = {}): SimilarityEvaluation {
    const n = input.shape[0];
    const sigma = this.sigmaOf(this.calls.length, ctx, request, n);
    this.calls.push({ timestep: ctx.timestep, grad: !!request.grad });
    return {
      sigma,
      nl2: this.metric === 'nl2' ? sigma.map((s) => -s) : null,
      nearestIndex: sigma.map(() => 0),
      nearestId: sigma.map(() => 0),
      grad: request.grad ? (tf.fill(input.shape, this.gradValue) as tf.Tensor4D) : null,
      voteIndices: request.voteK !== undefined ? sigma.map(() => Array.from({ length: Math.min(request.voteK as number, this.size) }, (_, i) => i)) : null,
    };
  }

  dispose(): void {}
}
