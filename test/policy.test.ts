import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { buildConfig, type ConfigInput } from '../src/core/config.js';
import { createLogger } from '../src/core/log.js';
import type { Server } from '../src/core/server.js';
import { openServer, startLethe } from '../src/lethe.js';
import type { PolicyDocumentId, PolicyVersion } from '../src/privacy/consent/policies.js';
import { fillTemplate, policyChangesHtml, policyChangesText, renderMarkdown } from '../src/privacy/consent/render.js';
import { consent } from '../src/privacy/consent/service.js';
import { legalBasisText } from '../src/privacy/registry.js';
import { runCli, writeConfig } from './support/cli.js';
import { fetchHttps } from './support/https.js';
import { startTestServer } from './support/lethe.js';

/** The policy documents: placeholders, rendering, changes between versions, `lethe policy`, and the /policy pages. */

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'lethe-policy-'));
  dirs.push(dir);
  return dir;
};

/** A server opened as the command line opens it: modules loaded, nothing listening. */
async function withOpenServer<T>(overrides: ConfigInput, fn: (server: Server) => T): Promise<T> {
  const dir = tempDir();
  const config = buildConfig(
    { domain: 'policy.test', dataDir: dir, storage: { path: ':memory:' }, log: { level: 'silent' }, ...overrides },
    dir,
  );
  const server = await openServer(config, createLogger(config));
  try {
    return fn(server);
  } finally {
    await server.close();
  }
}

function version(name: string, documents: Partial<Record<PolicyDocumentId, string>>, changes?: string): PolicyVersion {
  const titles = { terms: 'Terms of Service', privacy: 'Privacy Policy' };
  return {
    version: name,
    publishedAt: Date.parse('2026-01-01T00:00:00Z'),
    changes: changes ?? null,
    documents: Object.entries(documents).map(([id, markdown]) => ({
      id: id as PolicyDocumentId,
      title: titles[id as PolicyDocumentId],
      markdown,
      template: markdown,
    })),
  };
}

describe('placeholders', () => {
  const template =
    'Accept within {{consent.graceDays}} days. Contact: {{ contact.privacy }}. Security: {{contact.security}}. Offline: {{retention.offline}}.';

  test('are filled from the running configuration and the privacy registry', async () => {
    const filled = await withOpenServer(
      { consent: { graceDays: 21 }, contactAddresses: { privacy: ['mailto:dpo@policy.test'] } },
      (server) => ({
        text: fillTemplate(server, template),
        offline: server.privacy.get('offline')?.retention.description,
      }),
    );
    assert.equal(
      filled.text,
      `Accept within 21 days. Contact: [dpo@policy.test](<mailto:dpo@policy.test>). Security: none given. Offline: ${filled.offline}.`,
    );
    const defaults = await withOpenServer({}, (server) => fillTemplate(server, template));
    assert.match(defaults, /^Accept within 14 days\. Contact: none given\./);
  });

  test('the categories table has a row for every data category, legal bases as the configuration makes them', async () => {
    await withOpenServer({}, (server) => {
      const rows = fillTemplate(server, '{{categories}}').split('\n').slice(2);
      const categories = server.privacy.all();
      assert.ok(categories.length > 5);
      assert.equal(rows.length, categories.length);
      for (const c of categories)
        assert.ok(
          rows.some((r) => r.startsWith(`| \`${c.id}\` |`)),
          `a row for ${c.id}`,
        );
      assert.match(
        renderMarkdown(fillTemplate(server, '{{categories}}')),
        /<table>[\s\S]*<td><code>archive<\/code><\/td>/,
      );
      assert.equal(fillTemplate(server, '{{legalBasis.archive}}'), legalBasisText.consent);
    });
    // Archiving without asking changes the archive's legal basis, and the policy says so.
    const always = await withOpenServer({ mam: { defaultPolicy: 'always' } }, (server) =>
      fillTemplate(server, '{{legalBasis.archive}}\n\n{{archive}}'),
    );
    assert.match(always, /^GDPR art\. 6\(1\)\(f\)/);
    assert.match(always, /archived on the server without asking/);
  });

  test('an unknown placeholder is an error naming it and the known ones', async () => {
    await withOpenServer({}, (server) => {
      assert.throws(
        () => fillTemplate(server, 'Write to {{contact.dpo}} within {{consent.graceDays}} days'),
        (err: Error) => {
          assert.match(err.message, /unknown placeholder \{\{contact\.dpo\}\};/);
          assert.match(err.message, /known ones are .*contact\.privacy.*consent\.graceDays/);
          return true;
        },
      );
    });
  });

  test('generated text is literal in Markdown', async () => {
    const html = await withOpenServer({ disco: { name: 'Chat *for* <b>all</b> | [x](y)' } }, (server) =>
      renderMarkdown(fillTemplate(server, '{{name}}')),
    );
    assert.equal(html.trim(), '<p>Chat *for* &lt;b&gt;all&lt;/b&gt; | [x](y)</p>');
  });
});

test('renderMarkdown: GitHub-flavoured Markdown, and no way to add script', () => {
  const html = renderMarkdown(
    [
      '# Title',
      '| a | b |\n|---|---|\n| 1 | 2 |',
      '<script>alert(1)</script>',
      'Text <img src=x onerror=alert(1)> [bad](javascript:alert(1)) [good](https://example.org) ![pic](https://example.org/p.png) <!-- hidden -->',
      '[tab](<java\tscript:alert(1)>) [entity](&#106;avascript:alert(1)) [data](data:text/html,x) [relative](/policy/v1/terms?a=b:c)',
      '~~old~~',
    ].join('\n\n'),
  );
  assert.match(html, /<h1>Title<\/h1>/);
  assert.match(html, /<table>[\s\S]*<td>1<\/td>/);
  assert.match(html, /<del>old<\/del>/);
  assert.doesNotMatch(html, /<script|<img|java\s*script:|data:|hidden/i);
  assert.match(html, /tab entity data <a href="\/policy\/v1\/terms\?a=b:c">relative<\/a>/);
  assert.match(html, /&#60;script&#62;alert\(1\)&#60;\/script&#62;/);
  assert.match(
    html,
    /bad <a href="https:\/\/example\.org">good<\/a> <a href="https:\/\/example\.org\/p\.png">pic<\/a>/,
  );
  assert.doesNotMatch(renderMarkdown('# Title\n\nText', { withoutTitle: true }), /<h1>/);
});

test('policyChangesHtml shows insertions and deletions, escaped, and says which documents did not change', () => {
  const older = version('1', {
    terms: '# Terms\n\nYou must be 16 years old.\n\nBe nice.\n\nNo <spam> allowed.',
    privacy: 'We keep little.',
  });
  const newer = version('2', {
    terms: '# Terms\n\nYou must be 18 years old.\n\nBe nice.\n\nNo <spam> allowed.\n\nA new rule.',
    privacy: 'We keep little.',
  });
  const html = policyChangesHtml(older, newer);
  const [terms, privacy] = html.split('</section>');
  assert.match(terms as string, /<h2>Terms of Service<\/h2>/);
  assert.match(terms as string, /<del>16<\/del><ins>18<\/ins>/);
  assert.match(terms as string, /<p><ins>A new rule\.<\/ins><\/p>/);
  assert.doesNotMatch(terms as string, /<spam>/);
  assert.match(privacy as string, /<h2>Privacy Policy<\/h2><p>Unchanged\.<\/p>/);
  assert.equal(
    policyChangesText(older, newer),
    'Terms of Service: 1 paragraph changed, 1 paragraph added. Privacy Policy: unchanged.',
  );

  const removed = policyChangesHtml(newer, version('3', { terms: '# Terms\n\nBe nice.' }));
  assert.match(removed, /<del>You must be 18 years old\.<\/del>/);
  assert.match(
    removed,
    /<h2>Privacy Policy<\/h2><p>Removed in this version\.<\/p><p><del>We keep little\.<\/del><\/p>/,
  );
});

describe('lethe policy', () => {
  const { path, dir } = writeConfig({ consent: { graceDays: 21 } });
  dirs.push(dir);
  const lethe = (...args: string[]) => runCli(['--config', path, 'policy', ...args]);
  const policyDir = join(dir, 'data', 'policies');
  const edit = (file: string, change: (text: string) => string) => {
    const at = join(policyDir, file);
    writeFileSync(at, change(readFileSync(at, 'utf8')));
  };

  test('init, publish, list and show', () => {
    let r = lethe('publish', '--version', 'v1');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /neither terms\.md nor privacy\.md is in .*; run `lethe policy init`/);

    r = lethe('init');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(existsSync(join(policyDir, 'terms.md')) && existsSync(join(policyDir, 'privacy.md')));
    assert.match(r.stdout, /Next:[\s\S]*lethe policy publish --version \S+ --dry-run/);
    r = lethe('init');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /exist already; edit them, or pass --force/);

    // The starting points are not publishable until the operator has read and edited them.
    r = lethe('publish', '--version', 'v1');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /terms\.md and privacy\.md .* still contain the starting point's "Note for the operator"/);
    for (const file of ['terms.md', 'privacy.md']) edit(file, (text) => text.replace(/^>.*\n/gm, ''));

    edit('privacy.md', (text) => `${text}\nWrite to {{contact.dpo}}.\n`);
    r = lethe('publish', '--version', 'v1');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /privacy\.md: unknown placeholder \{\{contact\.dpo\}\}/);
    edit('privacy.md', (text) => text.replace('Write to {{contact.dpo}}.\n', ''));

    for (const [name, problem] of [
      ['bad name', /--version "bad name": a version is 1 to 64 letters/],
      ['current', /"current" names whatever version is current/],
      ['../x', /a version is 1 to 64 letters/],
    ] as const) {
      r = lethe('publish', '--version', name);
      assert.equal(r.status, 1, name);
      assert.match(r.stderr, problem);
    }

    r = lethe('publish', '--version', 'v1', '--dry-run');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^==> terms\.md: Terms of Service <==$/m);
    assert.match(r.stdout, /^==> privacy\.md: Privacy Policy <==$/m);
    assert.match(r.stdout, /You have\s+21 days to read and accept it/);
    assert.doesNotMatch(r.stdout, /\{\{/);
    assert.match(r.stdout, /dry run: version v1 was not published/);
    assert.match(lethe('list').stdout, /no version published yet/);

    r = lethe('publish', '--version', 'v1', '--changes', 'The first version');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /published version v1: terms\.md \(Terms of Service\), privacy\.md \(Privacy Policy\)/);
    assert.match(r.stdout, /within 10 seconds/);
    assert.match(r.stdout, /21 days after today/);

    r = lethe('publish', '--version', 'v1');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /version v1 was published already, and published versions never change/);

    edit('terms.md', (text) => `${text}\nBe kind.\n`);
    assert.equal(lethe('publish', '--version', 'v2').status, 0);

    const lines = lethe('list').stdout.trim().split('\n');
    assert.equal(lines.length, 2);
    assert.match(lines[0] as string, /^v1\t\d{4}-\d\d-\d\dT[\d:.]+Z\t\tThe first version$/);
    assert.match(lines[1] as string, /^v2\t\S+\tcurrent\t?$/);

    r = lethe('show');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /==> terms\.md[\s\S]*Be kind\.[\s\S]*==> privacy\.md: Privacy Policy <==\n# Privacy Policy/);
    r = lethe('show', 'v1', '--document', 'terms');
    assert.match(r.stdout, /^# Terms of Service\n/);
    assert.doesNotMatch(r.stdout, /Be kind|==>/);
    assert.match(lethe('show', 'v9').stderr, /no version "v9" was published/);
    assert.match(lethe('show', '--document', 'cookies').stderr, /Allowed choices are terms, privacy/);
  });
});

describe('the /policy pages', () => {
  test('every version stays readable at its URL; unknown ones are 404', async () => {
    const server = await startTestServer();
    try {
      const lethe = server.running.server;
      const get = (path: string) => fetchHttps(server.running.ports.http as number, path);

      let r = await get('/policy');
      assert.equal(r.status, 200);
      assert.match(r.body.toString(), /No terms of service or privacy policy have been published/);
      assert.equal((await get('/policy/current/terms')).status, 404);

      const publish = (name: string, rules: string, changes?: string) =>
        consent(lethe).publish(
          version(
            name,
            {
              terms: `# Terms of Service\n\n${rules}`,
              privacy: fillTemplate(lethe, '# Privacy Policy\n\nYou have {{consent.graceDays}} days.'),
            },
            changes,
          ),
        );
      await publish('v1', 'Version one rules.');
      await publish('v2', 'Version two rules.', 'Clearer rules');

      r = await get('/policy/v1/terms');
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /^text\/html; charset=utf-8/);
      assert.match(String(r.headers['content-security-policy']), /default-src 'none'/);
      let page = r.body.toString();
      assert.match(page, /<p>Version one rules\.<\/p>/);
      assert.equal(page.match(/<h1>/g)?.length, 1, 'the title once');
      assert.match(page, /A newer version replaces it: <a href="\/policy\/v2\/terms">version v2<\/a>/);
      assert.match(page, /href="\/policy\/v1\/privacy"/);
      assert.match(page, /href="\/consent"/);

      for (const path of ['/policy/v2/terms', '/policy/current/terms']) {
        page = (await get(path)).body.toString();
        assert.match(page, /Version two rules\./, path);
        assert.match(page, /Version <strong>v2<\/strong>, published .*This is the current version\./, path);
      }
      assert.match((await get('/policy/v1/privacy')).body.toString(), /You have 14 days\./);

      r = await get('/policy/v1/terms.md');
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-type'], 'text/markdown; charset=utf-8');
      assert.equal(r.body.toString(), '# Terms of Service\n\nVersion one rules.');

      page = (await get('/policy')).body.toString();
      assert.match(page, /The current version is <strong>v2<\/strong>/);
      assert.match(
        page,
        /Version v2<\/strong> \(current\)[\s\S]*What changed: Clearer rules[\s\S]*Terms of Service: 1 paragraph changed\. Privacy Policy: unchanged\.[\s\S]*Version v1<\/strong>, published[\s\S]*The first version\./,
      );

      for (const path of ['/policy/v9/terms', '/policy/v1/cookies', '/policy/v1/terms.txt', '/policy/v1'])
        assert.equal((await get(path)).status, 404, path);
    } finally {
      await server.stop();
    }
  });

  test('a published version that the configuration no longer matches is reported at start', async () => {
    const dir = tempDir();
    const start = async (graceDays: number) => {
      let log = '';
      const sink = new Writable({
        write(chunk, _encoding, done) {
          log += chunk.toString();
          done();
        },
      });
      const config = buildConfig(
        {
          domain: 'policy.test',
          dataDir: dir,
          c2s: { host: '127.0.0.1', port: 0, directTlsPort: 0 },
          http: { host: '127.0.0.1', port: 0 },
          log: { level: 'warn' },
          consent: { graceDays },
        },
        dir,
      );
      const running = await startLethe(config, createLogger(config, sink));
      return { running, log: () => log };
    };
    const outdated =
      /policy version v1 no longer matches the configuration \(privacy\)[\s\S]*lethe policy publish --version/;

    const first = await start(14);
    const template = 'You have {{consent.graceDays}} days.';
    await consent(first.running.server).publish({
      version: 'v1',
      publishedAt: Date.now(),
      changes: null,
      documents: [
        { id: 'privacy', title: 'Privacy', markdown: fillTemplate(first.running.server, template), template },
      ],
    });
    await first.running.stop();

    const same = await start(14);
    await same.running.stop();
    assert.doesNotMatch(same.log(), outdated);

    const changed = await start(30);
    await changed.running.stop();
    assert.match(changed.log(), outdated);
  });
});
