export * from './graph.js';
export { canonicalJson, blankOp, cacheKeyOf, computeCacheKeys, foldContentDigests, isIndependentLink } from './cache-key.js';
export { PLATFORM_ARGS, PROXY_ARGS, platformArgValues } from './args.js';
export { planBuild, listBaseImages, type PlanOptions, type PlanResult } from './plan-build.js';
export { graphToDot } from './dot.js';
