export * from './instructions.js';
export { parseDockerfile, parseInstructionText } from './parse.js';
export { INSTRUCTION_KINDS } from './build-instruction.js';
export { parseGoDuration } from './duration.js';
export * from './expand.js';
