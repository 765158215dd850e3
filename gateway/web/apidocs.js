// Renders /api/openapi.json: operations grouped by tag, each with its description, path
// parameters, request body fields (resolved through $ref) and responses. Text only goes in
// through textContent.

const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 16) {
    const name = schema.$ref.split('/').pop();
    schema = (doc.components?.schemas ?? {})[name];
  }
  return schema ?? {};
}

function typeOf(doc, schema) {
  const s = resolve(doc, schema);
  if (s.oneOf) return s.oneOf.map((x) => typeOf(doc, x)).join(' | ');
  if (s.anyOf) return s.anyOf.map((x) => typeOf(doc, x)).join(' | ');
  const t = Array.isArray(s.type) ? s.type.join(' | ') : (s.type ?? 'any');
  if (t.includes('array') && s.items) return t.replace('array', `array of ${typeOf(doc, s.items)}`);
  if (schema?.$ref) return `${schema.$ref.split('/').pop()} (${t})`;
  return t;
}

function fieldsTable(doc, schema) {
  const s = resolve(doc, schema);
  const props = s.properties ?? {};
  const required = new Set(s.required ?? []);
  if (Object.keys(props).length === 0) return el('p', {}, `Body: ${typeOf(doc, schema)}`);
  const table = el('table', {}, el('tr', {}, el('th', {}, 'field'), el('th', {}, 'type'), el('th', {}, 'required')));
  for (const [name, p] of Object.entries(props)) {
    table.append(el('tr', {},
      el('td', {}, name),
      el('td', {}, typeOf(doc, p)),
      el('td', {}, required.has(name) ? 'yes' : '')));
  }
  return table;
}

function operation(doc, path, method, op) {
  const body = el('div', { class: 'body' });
  if (op.description) body.append(el('p', {}, op.description.replaceAll('**', '')));
  const params = (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name);
  if (params.length) body.append(el('p', {}, `Path parameters: ${params.join(', ')}`));
  const content = op.requestBody?.content ?? {};
  for (const [media, c] of Object.entries(content)) {
    body.append(el('h4', {}, `Request body (${media})`));
    body.append(fieldsTable(doc, c.schema));
  }
  const responses = Object.entries(op.responses ?? {}).map(([code, r]) => `${code}: ${r.description ?? ''}`);
  if (responses.length) body.append(el('h4', {}, 'Responses'), el('p', {}, responses.join('\n')));
  const summary = el('summary', {},
    el('span', { class: `api-method ${method}` }, method.toUpperCase()), ' ', path);
  const details = el('details', { class: 'api-op', 'data-testid': 'api-op' }, summary, body);
  details.dataset.search = `${method} ${path} ${op.description ?? ''}`.toLowerCase();
  return details;
}

function render(doc) {
  const byTag = new Map((doc.tags ?? []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item[method];
      if (!op) continue;
      const tag = op.tags?.[0] ?? 'Other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  const nav = document.getElementById('tags');
  const main = document.getElementById('operations');
  nav.replaceChildren();
  main.replaceChildren();
  let n = 0;
  for (const [tag, ops] of byTag) {
    if (!ops.length) continue;
    const id = `tag-${n++}`;
    nav.append(el('a', { href: `#${id}` }, `${tag} (${ops.length})`));
    main.append(el('section', { class: 'api-tag', id }, el('h2', {}, tag), ...ops));
  }
}

function filter(text) {
  const q = text.trim().toLowerCase();
  for (const op of document.querySelectorAll('.api-op')) {
    op.classList.toggle('api-hidden', q !== '' && !op.dataset.search.includes(q));
  }
}

async function main() {
  const main = document.getElementById('operations');
  try {
    const res = await fetch('/api/openapi.json');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    render(await res.json());
  } catch (e) {
    main.replaceChildren(el('p', {}, `Could not load the API description: ${e.message}`));
  }
  document.getElementById('filter').addEventListener('input', (e) => filter(e.target.value));
}

main();
