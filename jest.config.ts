import type { Config } from 'jest';

// One jest project per package; tests are colocated under src/**/__tests__.
// Sources are ESM TypeScript, compiled by swc on the fly; in-repo imports of
// @diffmem/* resolve to src/ through the "diffmem-source" export condition.
const packages = ['core', 'metrics', 'guidance', 'video', 'cli'];

const swc: [string, Record<string, unknown>] = [
  '@swc/jest',
  {
    jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
    module: { type: 'es6' },
    sourceMaps: 'inline',
  },
];

const config: Config = {
  projects: packages.map((name) => ({
    displayName: name,
    rootDir: `<rootDir>/packages/${name}`,
    testEnvironment: 'node',
    testEnvironmentOptions: { customExportConditions: ['diffmem-source', 'node', 'node-addons'] },
    extensionsToTreatAsEsm: ['.ts'],
    transform: { '^.+\\.ts$': swc },
    moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
    testMatch: ['<rootDir>/src/**/__tests__/**/*.test.ts'],
    setupFilesAfterEnv: ['<rootDir>/../../scripts/jest-setup.ts'],
  })),
  testTimeout: 120_000,
};

export default config;
