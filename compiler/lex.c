/* lex.c: .grad source text -> tokens.
 *
 * The lexer runs over the whole file once and produces an array (the parser looks ahead
 * freely). It is the first line of defence against hostile input, so it validates UTF-8
 * before anything else, treats NUL and other control bytes as located errors, and never
 * reads past the end of the text (ctx_add_file NUL-terminates it, but a NUL inside the
 * file is an error, not an end).
 *
 * Newlines end statements, except inside ( ) and [ ] and after a token that cannot end
 * an expression (a binary operator, a comma, `=`, `->`, `(`...): then the line simply
 * continues, as one would expect from `a +\n b`. Consecutive newlines collapse to one.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ast.h"

static const char *const keywords[] = {"import", "as",  "const", "fn",   "model",  "entry",
                                       "param",  "let", "return", "for", "in",     "if",
                                       "else",   "extern", "true", "false", "and", "or",
                                       "not"};

/* Longest first: the lexer takes the first match. */
static const char *const puncts[] = {"**", "//", "->", "..", "<=", ">=", "==", "!=", "(", ")",
                                     "[",  "]",  "{",  "}",  ",",  ":",  ";",  "=",  "+", "-",
                                     "*",  "/",  "%",  "@",  "<",  ">",  "."};

typedef struct {
  Ctx *c;
  int file;
  const char *text, *p, *end, *line_start;
  int line;
  Token *toks;
  int n, cap;
  int depth;  /* ( and [ nesting: newlines inside are ignored */
  int braces; /* { nesting */
} Lexer;

static SrcLoc here(const Lexer *L, const char *at) {
  return (SrcLoc){L->file, L->line, (int32_t)(at - L->line_start) + 1};
}

/* Tokens of a file: far more than any real program, small enough to bound memory. */
#define FE_MAX_TOKENS (1 << 20)

static Token *push_static(Lexer *L, TokKind k, const char *start, const char *spelling) {
  if (L->n == L->cap) {
    L->cap = L->cap ? 2 * L->cap : 256;
    L->toks = xrealloc(L->toks, (size_t)L->cap * sizeof *L->toks);
  }
  Token *t = &L->toks[L->n++];
  memset(t, 0, sizeof *t);
  t->kind = k;
  t->loc = here(L, start);
  t->s = spelling;
  return t;
}

static Token *push(Lexer *L, TokKind k, const char *start, size_t len) {
  if (L->n == L->cap) {
    L->cap = L->cap ? 2 * L->cap : 256;
    L->toks = xrealloc(L->toks, (size_t)L->cap * sizeof *L->toks);
  }
  Token *t = &L->toks[L->n++];
  memset(t, 0, sizeof *t);
  t->kind = k;
  t->loc = here(L, start);
  char *s = arena_alloc(&L->c->arena, len + 1);
  memcpy(s, start, len);
  t->s = s;
  return t;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not valid. */
static int utf8_len(const unsigned char *p, const unsigned char *end) {
  if (p[0] < 0x80) return 1;
  int n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
  if (!n || p[0] > 0xF4 || end - p < n) return 0;
  for (int i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if (n == 3 && p[0] == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
  if (n == 3 && p[0] == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
  if (n == 4 && p[0] == 0xF0 && p[1] < 0x90) return 0;
  if (n == 4 && p[0] == 0xF4 && p[1] >= 0x90) return 0;
  return n;
}

/* Checks the whole file is UTF-8 before tokenizing; locates the first bad byte. */
static int check_utf8(Lexer *L) {
  const unsigned char *p = (const unsigned char *)L->text, *end = (const unsigned char *)L->end;
  int line = 1;
  const unsigned char *ls = p;
  while (p < end) {
    int n = utf8_len(p, end);
    if (!n) {
      diag_error(L->c, (SrcLoc){L->file, line, (int32_t)(p - ls) + 1},
                 "save the file as UTF-8", "invalid UTF-8 (byte 0x%02x)", *p);
      return -1;
    }
    if (*p == '\n') line++, ls = p + 1;
    p += n;
  }
  return 0;
}

static int ends_expression(const Token *t) {
  if (t->kind == TK_IDENT || t->kind == TK_INT || t->kind == TK_FLOAT || t->kind == TK_STR)
    return 1;
  if (t->kind == TK_KEYWORD) return !strcmp(t->s, "true") || !strcmp(t->s, "false");
  if (t->kind == TK_PUNCT)
    return !strcmp(t->s, ")") || !strcmp(t->s, "]") || !strcmp(t->s, "}");
  return 0; /* newline: collapse */
}

static void newline(Lexer *L) {
  if (L->depth == 0 && L->n > 0 && ends_expression(&L->toks[L->n - 1]))
    push_static(L, TK_NEWLINE, L->p, "");
  L->p++;
  L->line++;
  L->line_start = L->p;
}

/* number = digits [ "." digits ] [ ("e"|"E") ["+"|"-"] digits ], "_" between digits */
static int lex_number(Lexer *L) {
  const char *start = L->p, *q = L->p;
  int is_float = 0;
  while (*q >= '0' && *q <= '9') q++, q += (*q == '_' && q[1] >= '0' && q[1] <= '9');
  if (*q == '.' && q[1] != '.') {
    is_float = 1;
    q++;
    while (*q >= '0' && *q <= '9') q++, q += (*q == '_' && q[1] >= '0' && q[1] <= '9');
  }
  if (*q == 'e' || *q == 'E') {
    const char *e = q + 1;
    if (*e == '+' || *e == '-') e++;
    if (*e < '0' || *e > '9') {
      diag_error(L->c, here(L, start), "an exponent needs digits, e.g. 1e-3",
                 "invalid number literal");
      return -1;
    }
    while (*e >= '0' && *e <= '9') e++;
    q = e;
    is_float = 1;
  }
  if ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_' ||
      (*q >= '0' && *q <= '9')) {
    diag_error(L->c, here(L, start), NULL, "invalid number literal");
    return -1;
  }
  size_t len = (size_t)(q - start);
  char buf[512];
  size_t k = 0;
  for (const char *s = start; s < q && k < sizeof buf - 1; s++)
    if (*s != '_') buf[k++] = *s;
  buf[k] = 0;
  Token *t = push(L, is_float ? TK_FLOAT : TK_INT, start, len);
  errno = 0;
  if (is_float) {
    t->fval = strtod(buf, NULL);
    if (len >= sizeof buf - 1 || isinf(t->fval)) {
      diag_error(L->c, t->loc, "a double holds magnitudes up to about 1.8e308",
                 "float literal out of range");
      return -1;
    }
  } else {
    unsigned long long v = strtoull(buf, NULL, 10);
    if (errno == ERANGE || len >= sizeof buf - 1 || v > (unsigned long long)INT64_MAX) {
      diag_error(L->c, t->loc, "integers are 64-bit: at most 9223372036854775807",
                 "integer literal out of range");
      return -1;
    }
    t->ival = (int64_t)v;
  }
  L->p = q;
  return 0;
}

/* string = '"' { char | "\" ( '"' | "\" | "n" | "t" ) } '"', on one line */
static int lex_string(Lexer *L) {
  const char *start = L->p, *q = L->p + 1;
  char *buf = arena_alloc(&L->c->arena, (size_t)(L->end - L->p) + 1);
  size_t k = 0;
  for (;;) {
    if (q >= L->end || *q == '\n') {
      diag_error(L->c, here(L, start), "close the string with \" on the same line",
                 "unterminated string");
      return -1;
    }
    if (*q == '"') break;
    if (*q == '\\') {
      char e = q[1];
      char r = e == 'n' ? '\n' : e == 't' ? '\t' : e == '"' ? '"' : e == '\\' ? '\\' : 0;
      if (!r) {
        diag_error(L->c, here(L, q), "known escapes: \\\" \\\\ \\n \\t",
                   "unknown escape in string");
        return -1;
      }
      buf[k++] = r;
      q += 2;
      continue;
    }
    if (*q == 0 || (unsigned char)*q < 32) {
      diag_error(L->c, here(L, q), NULL, "control character in string");
      return -1;
    }
    buf[k++] = *q++;
  }
  buf[k] = 0;
  Token *t = push(L, TK_STR, start, (size_t)(q + 1 - start));
  t->str = buf;
  L->p = q + 1;
  return 0;
}

static int lex_ident(Lexer *L) {
  const char *q = L->p;
  while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || *q == '_' ||
         (*q >= '0' && *q <= '9'))
    q++;
  size_t n = (size_t)(q - L->p);
  for (size_t i = 0; i < sizeof keywords / sizeof *keywords; i++)
    if (strlen(keywords[i]) == n && !strncmp(L->p, keywords[i], n)) {
      push_static(L, TK_KEYWORD, L->p, keywords[i]);
      L->p = q;
      return 0;
    }
  push(L, TK_IDENT, L->p, n);
  L->p = q;
  return 0;
}

static int lex_punct(Lexer *L) {
  for (size_t i = 0; i < sizeof puncts / sizeof *puncts; i++) {
    size_t n = strlen(puncts[i]);
    if ((size_t)(L->end - L->p) >= n && !strncmp(L->p, puncts[i], n)) {
      push_static(L, TK_PUNCT, L->p, puncts[i]);
      if (*L->p == '(' || *L->p == '[') L->depth++;
      if ((*L->p == ')' || *L->p == ']') && L->depth > 0) L->depth--;
      /* braces never appear inside ( ) or [ ] in this grammar: an unclosed '(' does not
       * swallow the newlines of the rest of the file */
      if (*L->p == '{') L->braces++, L->depth = 0;
      if (*L->p == '}') L->braces -= L->braces > 0, L->depth = 0;
      if (L->depth + L->braces > FE_MAX_NESTING) {
        diag_error(L->c, here(L, L->p), "split the expression with let",
                   "nesting too deep (more than %d levels)", FE_MAX_NESTING);
        return -1;
      }
      L->p += n;
      return 0;
    }
  }
  unsigned char ch = (unsigned char)*L->p;
  if (ch >= 0x80)
    diag_error(L->c, here(L, L->p), "non-ASCII text is allowed only in comments and strings",
               "unexpected character");
  else if (ch < 32 || ch == 127)
    diag_error(L->c, here(L, L->p), NULL, "unexpected control character (byte 0x%02x)", ch);
  else
    diag_error(L->c, here(L, L->p), NULL, "unexpected character '%c'", ch);
  return -1;
}

static int lex_one(Lexer *L) {
  char ch = *L->p;
  if (ch == '\n') {
    newline(L);
    return 0;
  }
  if (ch == ' ' || ch == '\t' || ch == '\r') {
    L->p++;
    return 0;
  }
  if (ch == '#') {
    while (L->p < L->end && *L->p != '\n') L->p++;
    return 0;
  }
  if (ch >= '0' && ch <= '9') return lex_number(L);
  if (ch == '.' && L->p[1] >= '0' && L->p[1] <= '9') {
    diag_error(L->c, here(L, L->p), "write a leading zero: 0.5", "invalid number literal");
    return -1;
  }
  if (ch == '"') return lex_string(L);
  if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') return lex_ident(L);
  return lex_punct(L);
}

Token *fe_lex(Ctx *c, int file, int *ntok) {
  Lexer L = {0};
  L.c = c;
  L.file = file;
  L.text = L.p = L.line_start = c->files[file].text;
  L.end = L.text + c->files[file].len;
  L.line = 1;
  if (check_utf8(&L)) return NULL;
  while (L.p < L.end) {
    if (L.n >= FE_MAX_TOKENS) {
      diag_error(c, here(&L, L.p), "split the program into modules",
                 "file too large (more than %d tokens)", FE_MAX_TOKENS);
      free(L.toks);
      return NULL;
    }
    if (lex_one(&L)) {
      free(L.toks);
      return NULL;
    }
  }
  if (L.n > 0 && ends_expression(&L.toks[L.n - 1])) push_static(&L, TK_NEWLINE, L.p, "");
  push_static(&L, TK_EOF, L.p, "");
  /* copy into the arena so callers need not free */
  Token *out = arena_alloc(&c->arena, (size_t)L.n * sizeof *out);
  memcpy(out, L.toks, (size_t)L.n * sizeof *out);
  *ntok = L.n;
  free(L.toks);
  return out;
}
