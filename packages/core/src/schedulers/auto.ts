/**
 * Construct the right scheduler from a diffusers `scheduler_config.json` by its `_class_name`
 * (diffusers' `SchedulerMixin.from_pretrained` dispatch, restricted to the classes diffmem has).
 * @module
 */
import { ConfigError } from '../errors.js';
import { DDIMScheduler } from './scheduling_ddim.js';
import { DDIMInverseScheduler } from './scheduling_ddim_inverse.js';
import { DDPMScheduler } from './scheduling_ddpm.js';
import { parseSchedulerJsonText, type SchedulerJson } from './scheduling_utils.js';

/** Any scheduler diffmem implements. */
export type AnyScheduler = DDPMScheduler | DDIMScheduler | DDIMInverseScheduler;

/**
 * Builds a `DDPMScheduler`, `DDIMScheduler` or `DDIMInverseScheduler` from a diffusers
 * `scheduler_config.json` (object or text) according to its `_class_name`. A config of another
 * diffusers scheduler (e.g. `PNDMScheduler`) throws {@link ConfigError}; load it explicitly with
 * `DDIMScheduler.fromConfig(json)` to convert it, as `DDIMScheduler.from_config` does in diffusers.
 */
export function schedulerFromConfig(json: SchedulerJson | string): AnyScheduler {
  const obj = parseSchedulerJsonText(json);
  const cls = obj !== null && typeof obj === 'object' ? (obj as SchedulerJson)['_class_name'] : undefined;
  switch (cls) {
    case 'DDPMScheduler':
      return DDPMScheduler.fromConfig(obj as SchedulerJson);
    case 'DDIMScheduler':
      return DDIMScheduler.fromConfig(obj as SchedulerJson);
    case 'DDIMInverseScheduler':
      return DDIMInverseScheduler.fromConfig(obj as SchedulerJson);
    default:
      throw new ConfigError(
        `scheduler _class_name ${JSON.stringify(cls)} is not one of DDPMScheduler, DDIMScheduler, DDIMInverseScheduler; ` +
          'to convert a compatible config, call DDIMScheduler.fromConfig(json) or DDPMScheduler.fromConfig(json)',
        { key: '_class_name', value: cls },
      );
  }
}
