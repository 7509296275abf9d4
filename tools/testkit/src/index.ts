/**
 * @jwt-mesh/testkit: helpers shared by the jwt-mesh test suites (Envoy config tests now, the
 * end-to-end suite later). Real processes, loopback only; nothing here mocks anything.
 */
export { REPO_ROOT, defaultLogDir, startEnvoy, type EnvoyProcess, type StartEnvoyOptions } from './envoy.js';
export { envoyBinary, validateEnvoyConfig, type ValidationResult } from '@jwt-mesh/envoy/binary';
export { freePort, waitForHttp, waitForTcp, type WaitForHttpOptions, type WaitOptions } from './net.js';
export { startRedisServer, type RedisServer, type RedisServerOptions } from './redis.js';
