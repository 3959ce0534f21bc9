export * from './instructions.js';
export { parseDockerfile, parseInstructionText } from './parse.js';
export { INSTRUCTION_KINDS } from './build-instruction.js';
export { parseGoDuration } from './duration.js';
export * from './expand.js';
export { lintDockerfile, type LintFinding, type LintOptions } from './lint.js';
export { LINT_RULES, LINT_RULE_NAMES, type LintRule, type LintContext, type RuleFinding } from './lint-rules.js';
