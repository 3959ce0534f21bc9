import test, { type ExecutionContext } from 'ava';
import { LINT_RULES, lintDockerfile, parseDockerfile, type LintFinding } from '../../src/dockerfile/index.js';

function lint(text: string, buildArgs: Record<string, string> = {}): readonly LintFinding[] {
  return lintDockerfile(parseDockerfile(text, 'Dockerfile'), { buildArgs: new Map(Object.entries(buildArgs)) });
}

/** The findings of one rule as `line: message`. */
function of(rule: string, text: string, buildArgs: Record<string, string> = {}): string[] {
  return lint(text, buildArgs).filter((f) => f.rule === rule).map((f) => `${f.loc.line}: ${f.message}`);
}

function clean(t: ExecutionContext, rule: string, text: string, buildArgs: Record<string, string> = {}): void {
  t.deepEqual(of(rule, text, buildArgs), [], `${rule} should not fire`);
}

test('lintDockerfile: has at least 14 rules, each with a BuildKit-style name and a description', (t) => {
  t.true(LINT_RULES.length >= 14);
  for (const r of LINT_RULES) {
    t.regex(r.name, /^[A-Z][A-Za-z]+$/);
    t.true(r.description.length > 10);
  }
  t.is(new Set(LINT_RULES.map((r) => r.name)).size, LINT_RULES.length);
});

test('lintDockerfile: returns no findings when the Dockerfile follows every rule', (t) => {
  t.deepEqual(lint('ARG BASE=alpine:3.19\nFROM ${BASE} AS build\nWORKDIR /src\nENV APP=demo\nCOPY . .\nRUN make $APP\nFROM scratch\nCOPY --from=build /src/app /app\nCMD ["/app"]\n'), []);
});

test('JSONArgsRecommended: fires for shell-form CMD and ENTRYPOINT only', (t) => {
  t.deepEqual(of('JSONArgsRecommended', 'FROM a\nENTRYPOINT run\nCMD serve --port 80\n'), [
    '2: JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals',
    '3: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals',
  ]);
  clean(t, 'JSONArgsRecommended', 'FROM a\nCMD ["serve"]\nRUN echo shell is fine\n');
  clean(t, 'JSONArgsRecommended', 'FROM a AS base\nSHELL ["/bin/bash", "-c"]\nCMD serve\nFROM base\nENTRYPOINT run\n');
});

test('StageNameCasing: fires when a stage name has upper case', (t) => {
  t.deepEqual(of('StageNameCasing', 'FROM a AS Builder\n'), ["1: Stage name 'Builder' should be lowercase"]);
  clean(t, 'StageNameCasing', 'FROM a AS builder\n');
});

test('FromAsCasing: fires when FROM and AS differ in case', (t) => {
  t.deepEqual(of('FromAsCasing', 'FROM a as b\nfrom c AS d\n'), [
    "1: 'as' and 'FROM' keywords' casing do not match",
    "2: 'AS' and 'from' keywords' casing do not match",
  ]);
  clean(t, 'FromAsCasing', 'FROM a AS b\nfrom c as d\n');
});

test('UndefinedVar: fires for variables neither declared by ARG/ENV nor inherited when used in expanded instructions', (t) => {
  t.deepEqual(of('UndefinedVar', 'FROM alpine\nARG VERSION\nENV HOME_DIR=/home\nCOPY app-$VERSON.tar $HOME_DIR/\nWORKDIR $NOPE\nRUN echo $NOT_CHECKED\n'), [
    "4: Usage of undefined variable '$VERSON' (did you mean $VERSION?)",
    "5: Usage of undefined variable '$NOPE'",
  ]);
});

test('UndefinedVar: honours scoping: global ARGs need re-declaring, ENV inherits from a parent stage, quotes and defaults', (t) => {
  t.deepEqual(of('UndefinedVar', 'ARG G=1\nFROM alpine AS base\nENV E=1\nLABEL g=$G\nFROM base\nLABEL e=$E\n'), ["4: Usage of undefined variable '$G'"]);
  clean(t, 'UndefinedVar', 'ARG G=1\nFROM alpine\nARG G\nLABEL g=$G\n');
  clean(t, 'UndefinedVar', "FROM alpine\nLABEL a='$LITERAL' b=\\$ESCAPED c=${OPT:-dflt} d=${ALT:+x}\n");
  clean(t, 'UndefinedVar', 'FROM alpine\nENV PATH=/opt/bin:$PATH\nLABEL p=$http_proxy\n');
  t.deepEqual(of('UndefinedVar', 'FROM scratch\nENV PATH=/bin:$PATH\n'), ["2: Usage of undefined variable '$PATH'"]);
  t.deepEqual(of('UndefinedVar', 'FROM alpine\nENV A=1 B=$A\n'), ["2: Usage of undefined variable '$A'"]);
  t.deepEqual(of('UndefinedVar', 'FROM alpine\nLABEL x=$TARGETOS\n'), ["2: Usage of undefined variable '$TARGETOS'"]);
  clean(t, 'UndefinedVar', 'FROM alpine\nARG TARGETOS\nLABEL x=$TARGETOS\n');
});

test('UndefinedVar: uses the base image environment when the caller knows it', (t) => {
  const df = parseDockerfile('FROM golang:1.22\nENV PATH=$GOPATH/bin:$PATH\nWORKDIR $GOROOT\n', 'Dockerfile');
  const env = (image: string): readonly string[] | undefined => (image === 'golang:1.22' ? ['PATH', 'GOPATH'] : undefined);
  t.deepEqual(lintDockerfile(df, { baseImageEnv: env }).filter((f) => f.rule === 'UndefinedVar').map((f) => f.message), [
    "Usage of undefined variable '$GOROOT'",
  ]);
  t.is(lintDockerfile(df).filter((f) => f.rule === 'UndefinedVar').length, 2);
});

test('UndefinedVar: uses the backtick escape when the directive sets it', (t) => {
  clean(t, 'UndefinedVar', '# escape=`\nFROM alpine\nLABEL a=`$LITERAL\n');
});

test('UndefinedArgInFrom: fires for undeclared ARGs in FROM, not for platform ARGs', (t) => {
  t.deepEqual(of('UndefinedArgInFrom', 'ARG VERSION=3\nFROM alpine:$VERSOIN\nFROM --platform=$BUILDPLATFORM alpine:${VERSION}\n'), [
    "2: FROM argument 'VERSOIN' is not declared (did you mean VERSION?)",
  ]);
});

test('InvalidDefaultArgInFrom: fires when the global ARG default leaves an empty or invalid image, even with a build arg', (t) => {
  t.deepEqual(of('InvalidDefaultArgInFrom', 'ARG TAG\nFROM alpine:$TAG\n'), ['2: Default value for ARG alpine:$TAG results in empty or invalid base image name']);
  t.deepEqual(of('InvalidDefaultArgInFrom', 'ARG IMAGE\nFROM $IMAGE\n'), ['2: Default value for ARG $IMAGE results in empty or invalid base image name']);
  t.is(of('InvalidDefaultArgInFrom', 'ARG TAG\nFROM alpine:$TAG\n', { TAG: '3.19' }).length, 1);
  clean(t, 'InvalidDefaultArgInFrom', 'ARG VARIANT\nFROM busybox:stable${VARIANT}\nFROM alpine:${TAG:-3.14}\n');
  clean(t, 'InvalidDefaultArgInFrom', 'ARG TAG=3.19\nFROM alpine:${TAG}\nFROM busybox:${TAG:-latest}\n');
});

test('DuplicateStageName: fires on the second use of a name, case-insensitively', (t) => {
  t.deepEqual(of('DuplicateStageName', 'FROM a AS x\nFROM b AS X\n'), ['2: Duplicate stage name "x", stage names should be unique']);
});

test('ReservedStageName: fires when a stage is called scratch or context', (t) => {
  t.deepEqual(of('ReservedStageName', 'FROM a AS scratch\nFROM b AS context\nFROM c AS ok\n'), [
    '1: Stage name should not use the same name as reserved stage "scratch"',
    '2: Stage name should not use the same name as reserved stage "context"',
  ]);
});

test('MultipleInstructionsDisallowed: fires on every CMD, ENTRYPOINT or HEALTHCHECK but the last of a stage', (t) => {
  t.deepEqual(of('MultipleInstructionsDisallowed', 'FROM a\nCMD ["a"]\nCMD ["b"]\nHEALTHCHECK NONE\nHEALTHCHECK CMD true\nFROM b\nCMD ["c"]\n'), [
    '2: Multiple CMD instructions should not be used in the same stage because only the last one will be used',
    '4: Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used',
  ]);
});

test('MaintainerDeprecated: fires for MAINTAINER', (t) => {
  t.deepEqual(of('MaintainerDeprecated', 'FROM a\nMAINTAINER me\n'), ['2: Maintainer instruction is deprecated in favor of using label']);
});

test('WorkdirRelativePath: fires for a relative WORKDIR before any absolute one in the stage', (t) => {
  t.deepEqual(of('WorkdirRelativePath', 'FROM a\nWORKDIR app\nWORKDIR /srv\nWORKDIR data\nFROM b\nWORKDIR rel\n'), [
    '2: Relative workdir "app" can have unexpected results if the base image changes',
    '6: Relative workdir "rel" can have unexpected results if the base image changes',
  ]);
});

test('SecretsUsedInArgOrEnv: fires for secret-looking ARG and ENV names, not for public or unrelated ones', (t) => {
  t.deepEqual(of('SecretsUsedInArgOrEnv', 'ARG GITHUB_TOKEN\nFROM a\nENV DB_PASSWORD=x AWS_SECRET_ACCESS_KEY=y\nARG PUBLIC_KEY MONKEY KEYBOARD api_key\n'), [
    '1: Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")',
    '3: Do not use ARG or ENV instructions for sensitive data (ENV "DB_PASSWORD")',
    '3: Do not use ARG or ENV instructions for sensitive data (ENV "AWS_SECRET_ACCESS_KEY")',
    '4: Do not use ARG or ENV instructions for sensitive data (ARG "api_key")',
  ]);
});

test('LegacyKeyValueFormat: fires for ENV and LABEL in the whitespace form', (t) => {
  t.deepEqual(of('LegacyKeyValueFormat', 'FROM a\nENV A 1\nLABEL b 2\nENV C=3\n'), [
    '2: "ENV key=value" should be used instead of legacy "ENV key value" format',
    '3: "LABEL key=value" should be used instead of legacy "LABEL key value" format',
  ]);
});

test('ConsistentInstructionCasing: fires for keywords that differ from the majority casing', (t) => {
  t.deepEqual(of('ConsistentInstructionCasing', 'FROM a\nRUN x\nrun y\nCopy a b\n'), [
    "3: Command 'run' should match the case of the command majority (uppercase)",
    "4: Command 'Copy' should match the case of the command majority (uppercase)",
  ]);
  t.deepEqual(of('ConsistentInstructionCasing', 'from a\nrun x\nRUN y\n'), ["3: Command 'RUN' should match the case of the command majority (lowercase)"]);
});

test('NoEmptyContinuation: fires when an empty line sits inside a continuation, not in a heredoc', (t) => {
  t.deepEqual(of('NoEmptyContinuation', 'FROM a\nRUN a \\\n\n  b\nRUN c \\\n  # comment\n  d\n'), ['2: Empty continuation line']);
  clean(t, 'NoEmptyContinuation', 'FROM a\nRUN <<EOF\na\n\nb\nEOF\n');
});

test('RedundantTargetPlatform: fires for FROM --platform=$TARGETPLATFORM', (t) => {
  t.deepEqual(of('RedundantTargetPlatform', 'FROM --platform=$TARGETPLATFORM a\nFROM --platform=$BUILDPLATFORM b\n'), [
    '1: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior',
  ]);
});

test('FromPlatformFlagConstDisallowed, ExposeProtoCasing, ExposeInvalidFormat: fire on their patterns', (t) => {
  t.deepEqual(of('FromPlatformFlagConstDisallowed', 'FROM --platform=linux/amd64 a\nFROM --platform=linux/arm64 b AS build-arm64\n'), [
    '1: FROM --platform flag should not use constant value "linux/amd64"',
  ]);
  t.deepEqual(of('ExposeProtoCasing', 'FROM a\nEXPOSE 80/TCP 53/udp\n'), ["2: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase"]);
  t.deepEqual(of('ExposeInvalidFormat', 'FROM a\nEXPOSE 8080:80\n'), ["2: EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'"]);
});

test('lintDockerfile: honours # check=skip for named rules and for all', (t) => {
  const text = 'FROM a AS Build\nMAINTAINER me\n';
  t.deepEqual(lint(text).map((f) => f.rule), ['StageNameCasing', 'MaintainerDeprecated']);
  t.deepEqual(lint(`# check=skip=StageNameCasing\n${text}`).map((f) => f.rule), ['MaintainerDeprecated']);
  t.deepEqual(lint(`# check=skip=StageNameCasing,MaintainerDeprecated\n${text}`), []);
  t.deepEqual(lint(`# check=skip=all;error=true\n${text}`), []);
});

test('lintDockerfile: sorts findings by line and carries the file name', (t) => {
  const findings = lintDockerfile(parseDockerfile('FROM a AS B\nCMD x\nMAINTAINER m\n', 'sub/Dockerfile.x'));
  t.deepEqual(findings.map((f) => [f.loc.line, f.rule]), [[1, 'StageNameCasing'], [2, 'JSONArgsRecommended'], [3, 'MaintainerDeprecated']]);
  t.true(findings.every((f) => f.loc.file === 'sub/Dockerfile.x'));
});
