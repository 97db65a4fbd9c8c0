// Shared jest setup. Tests choose their backend explicitly; IS_TEST silences tfjs' console
// advertising (e.g. "install tfjs-node") so real warnings stay visible.
import * as tf from '@tensorflow/tfjs-core';

tf.env().set('IS_TEST', true);
