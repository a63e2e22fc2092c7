// Every element is built with DOM calls and every piece of data goes in as a text node:
// nothing the API returns is ever parsed as markup.
const SVG_NS = "http://www.w3.org/2000/svg";

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

export function replace(node, ...children) {
  node.replaceChildren();
  return build(node, null, children);
}

export function badge(status) {
  return el("span", { class: `badge ${status}` }, status);
}

export function clock(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

export function since(ms, from) {
  const s = (ms - from) / 1000;
  return s < 60 ? `+${s.toFixed(1)} s` : `+${Math.floor(s / 60)} m ${Math.round(s % 60)} s`;
}

export function short(text, n = 120) {
  const t = String(text ?? "").replace(/\s+/g, " ").trim();
  return t.length > n ? `${t.slice(0, n - 1)}…` : t;
}

// An internal link; ids go through encodeURIComponent so a hash can hold any of them.
export function link(kind, id, ...children) {
  return el("a", { href: `#${kind}/${encodeURIComponent(id)}` }, ...children);
}
