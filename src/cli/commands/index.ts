import type { Command } from '../command.js';
import { buildCommand } from './build.js';
import { notYetCommand } from './not-yet.js';

/** Every command, in help order. */
export const commands: readonly Command[] = [
  buildCommand,
  notYetCommand('run', 'Run a command in a new container', 'the sandbox and containers'),
  notYetCommand('ps', 'List containers', 'containers'),
  notYetCommand('logs', 'Fetch the logs of a container', 'containers'),
  notYetCommand('exec', 'Run a command in a running container', 'containers'),
  notYetCommand('stop', 'Stop running containers', 'containers'),
  notYetCommand('rm', 'Remove containers', 'containers'),
  notYetCommand('pull', 'Download an image from a registry', 'the registry client'),
  notYetCommand('push', 'Upload an image to a registry', 'the registry client'),
  notYetCommand('login', 'Log in to a registry', 'the registry client'),
  notYetCommand('logout', 'Log out from a registry', 'the registry client'),
  notYetCommand('images', 'List images', 'the content store'),
  notYetCommand('inspect', 'Show low-level information on images', 'the content store'),
  notYetCommand('history', 'Show the history of an image', 'the content store'),
  notYetCommand('tag', 'Create a tag that refers to an image', 'the content store'),
  notYetCommand('rmi', 'Remove images', 'the content store'),
  notYetCommand('save', 'Save images to a tar archive', 'the content store'),
  notYetCommand('load', 'Load images from a tar archive', 'the content store'),
  notYetCommand('import', 'Create an image from a root filesystem tarball', 'the content store'),
  notYetCommand('fsck', 'Verify the store', 'the content store'),
  notYetCommand('prune', 'Remove unused data', 'the content store'),
];

/** Finds a command by name. */
export function findCommand(name: string): Command | undefined {
  return commands.find((c) => c.name === name);
}
