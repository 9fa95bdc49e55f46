import { type XmlElement, x } from './element.js';

/** XEP-0004 data forms: building the forms the server offers and reading what clients submit. */
export const NS_DATA = 'jabber:x:data';

export type FieldType =
  | 'boolean'
  | 'fixed'
  | 'hidden'
  | 'jid-multi'
  | 'jid-single'
  | 'list-multi'
  | 'list-single'
  | 'text-multi'
  | 'text-private'
  | 'text-single';

export interface FieldSpec {
  var?: string;
  type?: FieldType;
  label?: string;
  required?: boolean;
  values?: string[];
  desc?: string;
}

export function buildForm(
  type: 'form' | 'result' | 'submit',
  fields: FieldSpec[],
  options: { title?: string; instructions?: string } = {},
): XmlElement {
  const form = x('x', { xmlns: NS_DATA, type });
  if (options.title) form.c('title').t(options.title);
  if (options.instructions) form.c('instructions').t(options.instructions);
  for (const f of fields) {
    const field = form.c('field', { var: f.var, type: f.type, label: f.label });
    if (f.desc) field.c('desc').t(f.desc);
    if (f.required) field.c('required');
    for (const v of f.values ?? []) field.c('value').t(v);
  }
  return form;
}

/** The values of a submitted form by field name; undefined when `el` holds no form of type submit. */
export function readSubmittedForm(el: XmlElement): Map<string, string[]> | undefined {
  const form = el.getChild('x', NS_DATA);
  if (form?.attrs.type !== 'submit') return undefined;
  const values = new Map<string, string[]>();
  for (const field of form.getChildren('field')) {
    const name = field.attrs.var;
    if (name)
      values.set(
        name,
        field.getChildren('value').map((v) => v.text()),
      );
  }
  return values;
}

/** XEP-0004 §3.3: booleans are "1"/"true" or "0"/"false". */
export function formBoolean(value: string | undefined): boolean {
  return value === '1' || value === 'true';
}
