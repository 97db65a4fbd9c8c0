import { describe, expect, it } from '@jest/globals';
import { ConfigError } from '../../errors.js';
import { parseUNet2DConfig } from '../../models/unet_2d_config.js';
import { smallVideoUNetConfig } from '../../models/video/video_unet_config.js';
import { smallUNetConfig } from '../train_unet.js';

describe('smallUNetConfig', () => {
  it('puts attention at the second level by default, as google/ddpm-cifar10-32', () => {
    const c = smallUNetConfig({ sampleSize: 16, channels: 1, numClassEmbeds: 11 });
    expect(c['down_block_types']).toEqual(['DownBlock2D', 'AttnDownBlock2D', 'DownBlock2D']);
    expect(c['up_block_types']).toEqual(['UpBlock2D', 'AttnUpBlock2D', 'UpBlock2D']);
    expect(c).toMatchObject({ sample_size: 16, in_channels: 1, out_channels: 1, block_out_channels: [32, 64, 64], num_class_embeds: 11, norm_num_groups: 8 });
    expect(() => parseUNet2DConfig(c)).not.toThrow();
  });

  it('moves attention to the levels asked for, or removes it', () => {
    const c = smallUNetConfig({ sampleSize: 32, channels: 3, blockOutChannels: [16, 32, 64], attentionLevels: [2] });
    expect(c['down_block_types']).toEqual(['DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D']);
    expect(c['up_block_types']).toEqual(['AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D']);
    const none = smallUNetConfig({ sampleSize: 32, channels: 1, attention: false, attentionLevels: [0] });
    expect(none['down_block_types']).toEqual(['DownBlock2D', 'DownBlock2D', 'DownBlock2D']);
    expect(smallUNetConfig({ sampleSize: 8, channels: 1, blockOutChannels: [8] })['down_block_types']).toEqual(['DownBlock2D']);
  });

  it('rejects a level the UNet does not have', () => {
    expect(() => smallUNetConfig({ sampleSize: 32, channels: 1, attentionLevels: [3] })).toThrow(ConfigError);
    expect(() => smallUNetConfig({ sampleSize: 32, channels: 1, attentionLevels: [3] })).toThrow(/levels 0…2/);
  });

  it('shares its fields with the video config, which keeps attention at the coarsest level', () => {
    const v = smallVideoUNetConfig({ sampleSize: 16, channels: 1, numFrames: 8, numClassEmbeds: 6 });
    expect(v['down_block_types']).toEqual(['DownBlock3D', 'AttnDownBlock3D']);
    expect(v).toMatchObject({ sample_size: 16, num_frames: 8, block_out_channels: [16, 32], num_class_embeds: 6, temporal_conv_layers: 2, add_attention: true });
  });
});
