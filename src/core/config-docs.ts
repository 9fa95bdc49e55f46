import { z } from 'zod';
import { configSchema } from './config.js';

interface JsonSchema {
  type?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  minimum?: number;
  maximum?: number;
}

/** docs/configuration.md, generated from the schema so that documentation and code cannot drift. */
export function renderConfigReference(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/core/config.ts by `npm run docs`; do not edit by hand. -->',
    '',
    'Lethe reads one YAML file, given with `--config PATH` or the `LETHE_CONFIG` environment variable.',
    'Without one, every key takes its default, which is what `npm start` on a fresh checkout uses.',
    'Relative paths are resolved against the directory of the configuration file.',
    'An unknown key or a wrong value stops start-up with a message that names the key and the fix;',
    '`lethe check-config` runs the same checks without starting.',
    '',
    'Example:',
    '',
    '```yaml',
    'domain: chat.example.org',
    'dataDir: /var/lib/lethe',
    'c2s:',
    '  port: 5222',
    '  directTlsPort: 5223',
    'tls:',
    '  cert: /etc/letsencrypt/live/chat.example.org/fullchain.pem',
    '  key: /etc/letsencrypt/live/chat.example.org/privkey.pem',
    'log:',
    '  level: info',
    '  ip: none',
    '```',
    '',
  ];
  const top: [string, JsonSchema][] = [];
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    if (prop.type === 'object' && prop.properties) {
      out.push(
        `## \`${key}\``,
        '',
        prop.description ?? '',
        '',
        '| key | type | default | meaning |',
        '|---|---|---|---|',
      );
      for (const [sub, p] of Object.entries(prop.properties)) out.push(row(`${key}.${sub}`, p));
      out.push('');
    } else top.push([key, prop]);
  }
  const header = ['## Top level', '', '| key | type | default | meaning |', '|---|---|---|---|'];
  const topRows = top.map(([k, p]) => row(k, p));
  const firstSection = out.findIndex((l) => l.startsWith('## '));
  out.splice(firstSection, 0, ...header, ...topRows, '');
  return `${out
    .join('\n')
    .replace(/\n{3,}/g, '\n\n')
    .trimEnd()}\n`;
}

function row(key: string, p: JsonSchema): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  return `| \`${key}\` | ${cell(typeOf(p))} | ${cell(p.default === undefined ? '—' : `\`${JSON.stringify(p.default)}\``)} | ${cell(p.description ?? '')} |`;
}

function typeOf(p: JsonSchema): string {
  if (p.enum) return p.enum.map((v) => `\`${JSON.stringify(v)}\``).join(', ');
  if (p.anyOf) return p.anyOf.map(typeOf).join(' or ');
  if (p.type === 'array') return `list of ${p.items ? typeOf(p.items) : 'values'}`;
  const range =
    p.type === 'integer' && (p.minimum !== undefined || p.maximum !== undefined)
      ? ` (${p.minimum ?? ''}–${p.maximum !== undefined && p.maximum < Number.MAX_SAFE_INTEGER ? p.maximum : ''})`
      : '';
  return `${p.type ?? 'value'}${range}`;
}
