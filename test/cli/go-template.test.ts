import test from 'ava';
import { alignTabs, parseGoTemplate, printGoValue, renderGoTemplate } from '../../src/cli/go-template.js';

const data = {
  Id: 'abc',
  State: { Status: 'running', Running: true, ExitCode: 0 },
  Config: { Labels: { 'com.example.a': 'x<y', b: '2' }, Cmd: ['sh', '-c', 'echo hi'], Env: [] as string[] },
  Mounts: [{ Source: '/a', Destination: '/x' }, { Source: '/b', Destination: '/y' }],
  Name: 'Web',
};

test('go template: fields, nested fields and dot when the template names them', (t) => {
  t.is(renderGoTemplate('{{.Id}} {{.State.Status}} {{.State.ExitCode}} {{.State.Running}}', data), 'abc running 0 true');
  t.is(renderGoTemplate('{{.}}', 'plain'), 'plain');
  t.is(renderGoTemplate('{{.Missing}}|{{.State.Missing.Deeper}}', data), '<no value>|<no value>');
});

test('go template: Go value printing of lists, maps and nil when printed without json', (t) => {
  t.is(renderGoTemplate('{{.Config.Cmd}}', data), '[sh -c echo hi]');
  t.is(renderGoTemplate('{{.Config.Labels}}', data), 'map[b:2 com.example.a:x<y]');
  t.is(printGoValue(null), '<nil>');
});

test('go template: json escapes HTML characters as Go when a value is marshalled', (t) => {
  t.is(renderGoTemplate('{{json .Config.Labels}}', data), '{"com.example.a":"x\\u003cy","b":"2"}');
  t.is(renderGoTemplate('{{json .Config.Cmd}} {{json .Nope}}', data), '["sh","-c","echo hi"] null');
});

test('go template: index, join, split, lower, upper, title and len when called with arguments', (t) => {
  t.is(renderGoTemplate('{{index .Config.Labels "com.example.a"}}', data), 'x<y');
  t.is(renderGoTemplate('{{index .Config.Cmd 2}}', data), 'echo hi');
  t.is(renderGoTemplate('{{join .Config.Cmd ","}}', data), 'sh,-c,echo hi');
  t.is(renderGoTemplate('{{lower .Name}} {{upper .Name}} {{title "hello world"}} {{len .Mounts}}', data), 'web WEB Hello World 2');
  t.is(renderGoTemplate('{{join (split "a:b:c" ":") "-"}}', data), 'a-b-c');
  t.is(renderGoTemplate('{{.Name | lower}}', data), 'web');
});

test('go template: println and print end or join values when used', (t) => {
  t.is(renderGoTemplate('{{println .Id .Name}}', data), 'abc Web\n');
  t.is(renderGoTemplate('{{print "a" 1}}', data), 'a1');
});

test('go template: range over a list and a map with else when the list is empty', (t) => {
  t.is(renderGoTemplate('{{range .Mounts}}{{.Source}}:{{.Destination}};{{end}}', data), '/a:/x;/b:/y;');
  t.is(renderGoTemplate('{{range .Config.Labels}}[{{.}}]{{end}}', data), '[2][x<y]');
  t.is(renderGoTemplate('{{range .Config.Env}}x{{else}}none{{end}}', data), 'none');
  t.is(renderGoTemplate('{{range .Absent}}x{{end}}', data), '');
});

test('go template: if, else if and else choose by Go truth when a field is tested', (t) => {
  t.is(renderGoTemplate('{{if .State.Running}}up{{else}}down{{end}}', data), 'up');
  t.is(renderGoTemplate('{{if .State.ExitCode}}failed{{else}}ok{{end}}', data), 'ok');
  t.is(renderGoTemplate('{{if .Config.Env}}env{{else if .Mounts}}mounts{{else}}none{{end}}', data), 'mounts');
  t.is(renderGoTemplate('{{if eq .State.Status "exited" "running"}}yes{{end}}{{if not .Missing}}!{{end}}', data), 'yes!');
  t.is(renderGoTemplate('{{if and .State.Running (ne .Name "x")}}both{{end}}', data), 'both');
});

test('go template: \\t and \\n in literal text and trim markers when given', (t) => {
  t.is(renderGoTemplate('{{.Id}}\\t{{.Name}}\\n', data), 'abc\tWeb\n');
  t.is(renderGoTemplate('a  {{- .Id -}}  b', data), 'aabcb');
  t.is(renderGoTemplate('{{/* note */}}x', data), 'x');
});

test('go template: a clear CLI_BAD_VALUE naming the unsupported part when the template uses more', (t) => {
  t.throws(() => parseGoTemplate('{{with .State}}x{{end}}'), { code: 'CLI_BAD_VALUE', message: /\{\{with\}\} is not supported/ });
  t.throws(() => parseGoTemplate('{{$x := .Id}}'), { code: 'CLI_BAD_VALUE', message: /variable "\$x"/ });
  t.throws(() => parseGoTemplate('{{truncate .Id 3}}'), { code: 'CLI_BAD_VALUE', message: /"truncate" is not supported/ });
  t.throws(() => parseGoTemplate('{{if .Id}}x'), { code: 'CLI_BAD_VALUE', message: /missing \{\{end\}\}/ });
  t.throws(() => parseGoTemplate('{{.Id'), { code: 'CLI_BAD_VALUE', message: /unclosed/ });
  t.throws(() => parseGoTemplate('x{{end}}'), { code: 'CLI_BAD_VALUE', message: /unexpected \{\{end\}\}/ });
  t.throws(() => renderGoTemplate('{{index .Config.Cmd 9}}', data), { code: 'CLI_BAD_VALUE', message: /out of range/ });
  t.throws(() => renderGoTemplate('{{join .Name ","}}', data), { code: 'CLI_BAD_VALUE', message: /join takes a list/ });
});

test('go template: alignTabs pads columns as docker tables when cells are tab-separated', (t) => {
  t.is(alignTabs(['CONTAINER ID\tNAMES', 'abc\tweb']), 'CONTAINER ID   NAMES\nabc            web');
  t.is(alignTabs(['A\tB\tC', 'a\tb\tc']), 'A         B         C\na         b         c');
});
