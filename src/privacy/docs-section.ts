/** Replaces the text between `<!-- NAME:start -->` and `<!-- NAME:end -->`, the generated parts of a document. */
export function replaceGeneratedSection(doc: string, name: string, content: string): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const from = doc.indexOf(start);
  const to = doc.indexOf(end);
  if (from === -1 || to < from) throw new Error(`the document has no ${start} … ${end} section`);
  return `${doc.slice(0, from + start.length)}\n${content}\n${doc.slice(to)}`;
}
