import { escapeHtml, htmlPage } from '../../core/html-page.js';
import type { HttpResponse } from '../../core/http-routes.js';
import type { LetheModule } from '../../core/module.js';
import type { Server } from '../../core/server.js';
import { POLICY_DOCUMENTS, type PolicyDocument, type PolicyDocumentId, type PolicyVersion } from './policies.js';
import { fillTemplate, policyChangesText, renderMarkdown } from './render.js';
import { CONSENT_PATH, consent } from './service.js';

/**
 * The published terms and privacy policy on the web: an index of every version, and each document of
 * each version at a stable URL (`/policy/<version>/<document>`, `current` for the current version,
 * `.md` for the Markdown), so that what a user accepted stays readable after newer versions. The pages
 * carry no script, styles or images (their CSP is `default-src 'none'`).
 */

export const POLICY_PATH = '/policy';

const documentPath = (version: string, id: PolicyDocumentId, suffix = '') =>
  `${POLICY_PATH}/${encodeURIComponent(version)}/${id}${suffix}`;

const date = (ms: number) => {
  const iso = new Date(ms).toISOString();
  return `<time datetime="${iso}">${iso.slice(0, 10)}</time>`;
};

function notFound(): HttpResponse {
  return htmlPage(
    404,
    'Not found',
    `<p>There is no such version or document. <a href="${POLICY_PATH}">All published versions</a>.</p>`,
  );
}

const documentLinks = (policy: PolicyVersion) =>
  policy.documents.map((d) => `<a href="${documentPath(policy.version, d.id)}">${escapeHtml(d.title)}</a>`).join(', ');

async function indexPage(server: Server): Promise<HttpResponse> {
  const store = consent(server).policies;
  const title = `Terms of service and privacy policy of ${server.config.domains[0]}`;
  const versions = (await Promise.all((await store.list()).map((v) => store.get(v.version)))).filter(
    (v): v is PolicyVersion => v !== undefined,
  );
  const current = versions.at(-1);
  if (!current)
    return htmlPage(200, title, `<p>No terms of service or privacy policy have been published on this server yet.</p>`);
  const items = versions
    .map((v, i) => {
      const previous = versions[i - 1];
      const summary = [
        v.changes ? `<p>What changed: ${escapeHtml(v.changes)}</p>` : '',
        `<p>${previous ? escapeHtml(policyChangesText(previous, v)) : 'The first version.'}</p>`,
      ].join('');
      return `<li><p><strong>Version ${escapeHtml(v.version)}</strong>${v === current ? ' (current)' : ''}, published ${date(
        v.publishedAt,
      )}: ${documentLinks(v)}</p>${summary}</li>`;
    })
    .reverse();
  return htmlPage(
    200,
    title,
    `<p>The current version is <strong>${escapeHtml(current.version)}</strong>, published ${date(current.publishedAt)}: ${documentLinks(current)}.</p>
<p><a href="${CONSENT_PATH}">Review and accept the current version</a></p>
<h2>All versions, newest first</h2>
<ol reversed>
${items.join('\n')}
</ol>`,
  );
}

function documentPage(policy: PolicyVersion, doc: PolicyDocument, current: PolicyVersion): HttpResponse {
  const version = escapeHtml(policy.version);
  const others = policy.documents
    .filter((d) => d !== doc)
    .map((d) => `<li><a href="${documentPath(policy.version, d.id)}">${escapeHtml(d.title)}</a></li>`);
  const standing =
    policy.version === current.version
      ? 'This is the current version.'
      : `A newer version replaces it: <a href="${documentPath(current.version, doc.id)}">version ${escapeHtml(current.version)}</a>.`;
  return htmlPage(
    200,
    doc.title,
    `<header>
<nav aria-label="Terms and policy"><ul>
${others.join('\n')}
<li><a href="${POLICY_PATH}">All versions</a></li>
<li><a href="${CONSENT_PATH}">Review and accept the current version</a></li>
</ul></nav>
<p>Version <strong>${version}</strong>, published ${date(policy.publishedAt)}. ${standing}</p>
</header>
<main>
${renderMarkdown(doc.markdown, { withoutTitle: true })}
</main>
<footer><p><a href="${documentPath(policy.version, doc.id, '.md')}">This document as Markdown</a></p></footer>`,
  );
}

async function documentRoute(server: Server, version: string, document: string): Promise<HttpResponse> {
  const markdown = document.endsWith('.md');
  const id = (markdown ? document.slice(0, -3) : document) as PolicyDocumentId;
  if (!POLICY_DOCUMENTS.includes(id)) return notFound();
  const store = consent(server).policies;
  const current = await store.current();
  const policy = version === 'current' ? current : await store.get(version);
  const doc = policy?.documents.find((d) => d.id === id);
  if (!policy || !doc || !current) return notFound();
  if (markdown) return { status: 200, headers: { 'content-type': 'text/markdown; charset=utf-8' }, body: doc.markdown };
  return documentPage(policy, doc, current);
}

/** Warns when the current version, filled again now, would say something else: the configuration changed since. */
async function warnIfOutdated(server: Server): Promise<void> {
  const current = await consent(server).policies.current();
  if (!current) return;
  const outdated = current.documents.flatMap((d) => {
    try {
      return fillTemplate(server, d.template) === d.markdown ? [] : [d.id];
    } catch (err) {
      return [`${d.id} (${(err as Error).message})`];
    }
  });
  if (outdated.length)
    server.log.warn(
      { version: current.version, documents: outdated },
      `policy version ${current.version} no longer matches the configuration (${outdated.join(', ')}): ` +
        'users are shown what the server did when it was published. Check with `lethe policy publish --version NEW --dry-run`, ' +
        'then publish a new version with `lethe policy publish --version NEW --changes TEXT`',
    );
}

export const policyPagesModule: LetheModule = {
  name: 'policy-pages',
  load(server) {
    if (!server.config.http.enabled) return;
    server.http.route('GET', POLICY_PATH, () => indexPage(server));
    server.http.route('GET', `${POLICY_PATH}/:version/:document`, (request) =>
      documentRoute(server, request.params.version as string, request.params.document as string),
    );
    // Once every module has registered its categories and commands, which the documents describe.
    server.hooks.on('server/started', () => warnIfOutdated(server));
  },
};
