import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

/** Reads a password: the whole of stdin with `--password-stdin` (for scripts), else a prompt without echo. */
export async function readPassword(options: { stdin: boolean; confirm: boolean }): Promise<string> {
  if (options.stdin) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    // Only the line ending a shell adds is stripped; other whitespace is part of the password.
    return Buffer.concat(chunks)
      .toString('utf8')
      .replace(/\r?\n$/, '');
  }
  if (!process.stdin.isTTY)
    throw new Error('no terminal to prompt for a password on; pass --password-stdin and pipe the password in');
  const first = await prompt('Password: ');
  if (options.confirm && (await prompt('Repeat password: ')) !== first) throw new Error('the passwords do not match');
  return first;
}

function prompt(question: string): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _encoding, callback) {
      if (!muted) process.stderr.write(chunk);
      callback();
    },
  });
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  return new Promise((resolve) => {
    rl.question(question, (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
    muted = true;
  });
}
