import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Command, Option } from 'commander';
import type { Server } from '../core/server.js';
import {
  POLICY_DOCUMENTS,
  type PolicyDocument,
  type PolicyDocumentId,
  policyTitles,
  policyVersionProblem,
} from '../privacy/consent/policies.js';
import { fillTemplate, markdownTitle } from '../privacy/consent/render.js';
import { consent } from '../privacy/consent/service.js';

/** `lethe policy init|publish|list|show`: the operator's side of the versioned terms and privacy policy. */

type WithServer = <T>(fn: (server: Server) => Promise<T>) => Promise<T>;

/** The starting points shipped in the package's `policies/` (this file is <package>/<outDir>/src/cli/policy.js). */
const STARTING_POINTS = fileURLToPath(new URL('../../../policies/', import.meta.url));

/** The starting points open with a note the operator must remove; publishing one unedited would bind users to it. */
const OPERATOR_NOTE = 'Note for the operator';

const out = (line = '') => process.stdout.write(`${line}\n`);

const fileOf = (server: Server, id: PolicyDocumentId) => join(server.config.consent.policyDir, `${id}.md`);

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );
}

/** The documents of `consent.policyDir`, placeholders filled. */
async function readDocuments(server: Server): Promise<PolicyDocument[]> {
  const documents: PolicyDocument[] = [];
  for (const id of POLICY_DOCUMENTS) {
    const file = fileOf(server, id);
    if (!(await exists(file))) continue;
    const template = await readFile(file, 'utf8');
    let markdown: string;
    try {
      markdown = fillTemplate(server, template);
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
    documents.push({ id, title: markdownTitle(markdown) ?? policyTitles[id], markdown, template });
  }
  if (!documents.length)
    throw new Error(
      `neither terms.md nor privacy.md is in ${server.config.consent.policyDir} (consent.policyDir); run \`lethe policy init\` to write starting points there`,
    );
  return documents;
}

function printDocuments(documents: PolicyDocument[]): void {
  for (const d of documents) {
    if (documents.length > 1) out(`==> ${d.id}.md: ${d.title} <==`);
    out(d.markdown.replace(/\n$/, ''));
  }
}

export function addPolicyCommands(program: Command, withServer: WithServer): void {
  const policy = program
    .command('policy')
    .description('the versioned terms of service and privacy policy that users accept (consent.policyDir)');

  policy
    .command('init')
    .description('write editable starting points of terms.md and privacy.md into consent.policyDir')
    .option('--force', 'replace existing files (your edits in them are lost)')
    .action(async (opts: { force?: boolean }) => {
      await withServer(async (server) => {
        const files = POLICY_DOCUMENTS.map((id) => fileOf(server, id));
        const present = [];
        for (const file of files) if (await exists(file)) present.push(file);
        if (present.length && !opts.force)
          throw new Error(`${present.join(' and ')} exist already; edit them, or pass --force to replace them`);
        await mkdir(server.config.consent.policyDir, { recursive: true });
        for (const [i, id] of POLICY_DOCUMENTS.entries())
          await copyFile(join(STARTING_POINTS, `${id}.md`), files[i] as string);
        const version = new Date().toISOString().slice(0, 10);
        out(`wrote ${files.join(' and ')}`);
        out('Next:');
        out(
          '  1. Edit terms.md: the rules of your service are yours to write. Fill in the parts in [square brackets] and remove the note for the operator at the top.',
        );
        out(
          '  2. Do the same in privacy.md. Its {{placeholders}} are filled from the configuration and the privacy registry at publication, so they stay true to what the server does; say who you are and what you do beyond running Lethe.',
        );
        out(`  3. Check the result: lethe policy publish --version ${version} --dry-run`);
        out(`  4. Publish it: lethe policy publish --version ${version}`);
      });
    });

  policy
    .command('publish')
    .description(
      'publish terms.md and privacy.md from consent.policyDir as a new version, which users are asked to accept',
    )
    .requiredOption(
      '--version <name>',
      'the new version’s name, e.g. 2026-07 or v2 (letters, digits, dots, dashes, underscores)',
    )
    .option('--changes <text>', 'what changed, in a sentence or two; shown to users who accepted an earlier version')
    .option('--dry-run', 'print the documents with their placeholders filled, and publish nothing')
    .action(async (opts: { version: string; changes?: string; dryRun?: boolean }) => {
      const problem = policyVersionProblem(opts.version);
      if (problem) throw new Error(`--version ${JSON.stringify(opts.version)}: ${problem}`);
      await withServer(async (server) => {
        const service = consent(server);
        if (await service.policies.get(opts.version))
          throw new Error(
            `version ${opts.version} was published already, and published versions never change; choose another name (\`lethe policy list\` shows those taken)`,
          );
        const documents = await readDocuments(server);
        const noted = documents.filter((d) => d.markdown.includes(OPERATOR_NOTE)).map((d) => `${d.id}.md`);
        const contain = noted.length > 1 ? 'contain' : 'contains';
        if (opts.dryRun) {
          printDocuments(documents);
          if (noted.length) out(`note: ${noted.join(' and ')} still ${contain} the note for the operator`);
          return out(`dry run: version ${opts.version} was not published`);
        }
        if (noted.length)
          throw new Error(
            `${noted.join(' and ')} in ${server.config.consent.policyDir} still ${contain} the starting point's "${OPERATOR_NOTE}": edit the documents and remove the note, then publish`,
          );
        await service.publish({
          version: opts.version,
          publishedAt: Date.now(),
          changes: opts.changes?.trim() || null,
          documents,
        });
        const { checkInterval, graceDays } = server.config.consent;
        out(`published version ${opts.version}: ${documents.map((d) => `${d.id}.md (${d.title})`).join(', ')}`);
        out(
          `A running server notices it within ${checkInterval} seconds and sends every user a notice with a link to read and accept it (users who are offline get it when they next log in).`,
        );
        out(
          graceDays > 0
            ? `Users who have not accepted it ${graceDays} days after today (or after their account was created, if later) cannot write to others until they do (consent.graceDays).`
            : 'Users who have not accepted it cannot write to others until they do (consent.graceDays is 0).',
        );
      });
    });

  policy
    .command('list')
    .description('every published version, oldest first: name, publication time, current, what changed')
    .action(async () => {
      await withServer(async (server) => {
        const store = consent(server).policies;
        const versions = await store.list();
        if (!versions.length)
          return out(
            'no version published yet; write the documents with `lethe policy init`, then `lethe policy publish`',
          );
        const current = versions.at(-1)?.version;
        for (const v of versions)
          out(
            [
              v.version,
              new Date(v.publishedAt).toISOString(),
              v.version === current ? 'current' : '',
              v.changes ?? '',
            ].join('\t'),
          );
      });
    });

  policy
    .command('show [version]')
    .description('print the published Markdown of a version (default: `current`)')
    .addOption(new Option('--document <document>', 'only this document').choices(POLICY_DOCUMENTS))
    .action(async (version: string | undefined, opts: { document?: PolicyDocumentId }) => {
      await withServer(async (server) => {
        const store = consent(server).policies;
        const policy =
          version === undefined || version === 'current' ? await store.current() : await store.get(version);
        if (!policy)
          throw new Error(
            version === undefined || version === 'current'
              ? 'no version published yet'
              : `no version ${JSON.stringify(version)} was published; \`lethe policy list\` shows those that were`,
          );
        const documents = policy.documents.filter((d) => opts.document === undefined || d.id === opts.document);
        if (!documents.length) throw new Error(`version ${policy.version} has no ${opts.document} document`);
        printDocuments(documents);
      });
    });
}
