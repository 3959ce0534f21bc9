import type { Command } from '../command.js';
import { buildCommand } from './build.js';
import { runCommand } from './run.js';
import { psCommand, logsCommand, stopCommand, killCommand, rmCommand, startCommand, containerCommand } from './containers.js';
import { containerMonitorCommand } from './container-monitor.js';
import { portCommand } from './port.js';
import { execCommand } from './exec.js';
import { attachCommand } from './attach.js';
import { cpCommand, exportCommand } from './container-files.js';
import { commitCommand } from './container-commit.js';
import { pauseCommand, restartCommand, statsCommand, topCommand, unpauseCommand } from './container-ops.js';
import { imagesCommand } from './images.js';
import { inspectCommand } from './inspect.js';
import { historyCommand } from './history.js';
import { tagCommand } from './tag.js';
import { rmiCommand } from './rmi.js';
import { saveCommand } from './save.js';
import { loadCommand } from './load.js';
import { importCommand } from './import.js';
import { fsckCommand } from './fsck.js';
import { pruneCommand } from './prune.js';
import { pullCommand } from './pull.js';
import { volumeCommand } from './volume.js';
import { pushCommand } from './push.js';
import { loginCommand } from './login.js';
import { logoutCommand } from './logout.js';

/** Every command, in help order. */
export const commands: readonly Command[] = [
  buildCommand,
  runCommand,
  psCommand,
  logsCommand,
  execCommand,
  attachCommand,
  topCommand,
  statsCommand,
  pauseCommand,
  unpauseCommand,
  restartCommand,
  commitCommand,
  cpCommand,
  exportCommand,
  stopCommand,
  startCommand,
  killCommand,
  rmCommand,
  containerCommand,
  portCommand,
  volumeCommand,
  pullCommand,
  pushCommand,
  loginCommand,
  logoutCommand,
  imagesCommand,
  inspectCommand,
  historyCommand,
  tagCommand,
  rmiCommand,
  saveCommand,
  loadCommand,
  importCommand,
  fsckCommand,
  pruneCommand,
];

/** Commands that run but are not listed in help: the detached container monitor (`run -d`, `start`). */
const hiddenCommands: readonly Command[] = [containerMonitorCommand];

/** Finds a command by name. */
export function findCommand(name: string): Command | undefined {
  return commands.find((c) => c.name === name) ?? hiddenCommands.find((c) => c.name === name);
}
