/*
 * printf and snprintf over one formatter.
 *
 * The formatter writes characters to an `out`, which either fills a
 * caller's buffer (snprintf) or the console line buffer.  The console is
 * written one line per hypercall: a checkpointing monitor holds output back
 * per hypercall, and whole lines keep a restored guest's output readable.
 */
#include "ftvm.h"

#define LINE_MAX 1024

static char line[LINE_MAX];
static size_t line_len;

struct out {
    char *buf;          /* NULL: the console */
    size_t size;
    size_t len;         /* characters produced, stored or not */
};

void ftvm_console_flush(void)
{
    if (line_len > 0)
        ftvm_console_write(line, line_len);
    line_len = 0;
}

static void put(struct out *o, char c)
{
    if (o->buf == NULL) {
        line[line_len++] = c;
        if (c == '\n' || line_len == LINE_MAX)
            ftvm_console_flush();
    } else if (o->len + 1 < o->size) {
        o->buf[o->len] = c;
    }
    o->len++;
}

static void pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        put(o, c);
}

struct spec {
    bool left;          /* '-' */
    bool zero;          /* '0' */
    bool alt;           /* '#' */
    char sign;          /* '+', ' ' or 0 */
    int width;
    int precision;      /* -1: none */
};

static void put_string(struct out *o, const struct spec *sp, const char *s)
{
    int n = (int)strnlen(s, sp->precision >= 0 ? (size_t)sp->precision
                                               : (size_t)INT32_MAX);

    if (!sp->left)
        pad(o, ' ', sp->width - n);
    for (int i = 0; i < n; i++)
        put(o, s[i]);
    if (sp->left)
        pad(o, ' ', sp->width - n);
}

static void put_number(struct out *o, const struct spec *sp, uint64_t v,
                       bool negative, unsigned base, bool upper,
                       const char *prefix)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    char tmp[24];
    int n = 0;

    /* printf("%.0d", 0) prints nothing; keep that C rule. */
    if (v != 0 || sp->precision != 0) {
        do {
            tmp[n++] = digits[v % base];
            v /= base;
        } while (v != 0);
    }

    char sign = negative ? '-' : sp->sign;
    int zeros = sp->precision > n ? sp->precision - n : 0;
    int body = (sign ? 1 : 0) + (int)strlen(prefix) + zeros + n;

    if (sp->zero && !sp->left && sp->precision < 0 && sp->width > body) {
        zeros += sp->width - body;
        body = sp->width;
    }
    if (!sp->left)
        pad(o, ' ', sp->width - body);
    if (sign)
        put(o, sign);
    for (const char *p = prefix; *p; p++)
        put(o, *p);
    pad(o, '0', zeros);
    while (n > 0)
        put(o, tmp[--n]);
    if (sp->left)
        pad(o, ' ', sp->width - body);
}

static int parse_int(const char **fmt)
{
    int v = 0;

    while (**fmt >= '0' && **fmt <= '9') {
        if (v < 100000)
            v = v * 10 + (**fmt - '0');
        (*fmt)++;
    }
    return v;
}

enum length { LEN_INT, LEN_CHAR, LEN_SHORT, LEN_LONG, LEN_SIZE };

static uint64_t arg_unsigned(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (unsigned char)va_arg(*ap, unsigned);
    case LEN_SHORT: return (unsigned short)va_arg(*ap, unsigned);
    case LEN_LONG: return va_arg(*ap, unsigned long long);
    case LEN_SIZE: return va_arg(*ap, size_t);
    default: return va_arg(*ap, unsigned);
    }
}

static int64_t arg_signed(va_list *ap, enum length len)
{
    switch (len) {
    case LEN_CHAR: return (signed char)va_arg(*ap, int);
    case LEN_SHORT: return (short)va_arg(*ap, int);
    case LEN_LONG: return va_arg(*ap, long long);
    case LEN_SIZE: return va_arg(*ap, ptrdiff_t);
    default: return va_arg(*ap, int);
    }
}

static void format(struct out *o, const char *fmt, va_list ap_in)
{
    va_list ap;

    /* Through a pointer so helpers can take arguments (va_list may be an
     * array type, which does not pass by value portably). */
    va_copy(ap, ap_in);
    while (*fmt) {
        if (*fmt != '%') {
            put(o, *fmt++);
            continue;
        }
        fmt++;

        struct spec sp = { .precision = -1 };
        for (;; fmt++) {
            if (*fmt == '-')
                sp.left = true;
            else if (*fmt == '0')
                sp.zero = true;
            else if (*fmt == '#')
                sp.alt = true;
            else if (*fmt == '+')
                sp.sign = '+';
            else if (*fmt == ' ' && sp.sign == 0)
                sp.sign = ' ';
            else
                break;
        }
        if (*fmt == '*') {
            sp.width = va_arg(ap, int);
            if (sp.width < 0) {
                sp.left = true;
                sp.width = -sp.width;
            }
            fmt++;
        } else {
            sp.width = parse_int(&fmt);
        }
        if (*fmt == '.') {
            fmt++;
            if (*fmt == '*') {
                sp.precision = va_arg(ap, int);
                if (sp.precision < 0)
                    sp.precision = -1;
                fmt++;
            } else {
                sp.precision = parse_int(&fmt);
            }
        }

        enum length len = LEN_INT;
        if (*fmt == 'h') {
            fmt++;
            len = LEN_SHORT;
            if (*fmt == 'h') {
                fmt++;
                len = LEN_CHAR;
            }
        } else if (*fmt == 'l') {
            fmt++;
            len = LEN_LONG;
            if (*fmt == 'l')
                fmt++;
        } else if (*fmt == 'z' || *fmt == 't') {
            fmt++;
            len = LEN_SIZE;
        } else if (*fmt == 'j') {
            fmt++;
            len = LEN_LONG;
        }

        char conv = *fmt;
        if (conv == '\0')
            break;
        fmt++;
        switch (conv) {
        case 'd':
        case 'i': {
            int64_t v = arg_signed(&ap, len);
            uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;
            put_number(o, &sp, mag, v < 0, 10, false, "");
            break;
        }
        case 'u':
            put_number(o, &sp, arg_unsigned(&ap, len), false, 10, false, "");
            break;
        case 'x':
        case 'X':
        case 'o': {
            uint64_t v = arg_unsigned(&ap, len);
            const char *prefix = "";
            if (sp.alt && v != 0)
                prefix = conv == 'o' ? "0" : conv == 'x' ? "0x" : "0X";
            sp.sign = 0;
            put_number(o, &sp, v, false, conv == 'o' ? 8 : 16, conv == 'X',
                       prefix);
            break;
        }
        case 'p':
            sp.sign = 0;
            put_number(o, &sp, (uint64_t)(uintptr_t)va_arg(ap, void *),
                       false, 16, false, "0x");
            break;
        case 'c': {
            char c = (char)va_arg(ap, int);
            if (!sp.left)
                pad(o, ' ', sp.width - 1);
            put(o, c);
            if (sp.left)
                pad(o, ' ', sp.width - 1);
            break;
        }
        case 's': {
            const char *s = va_arg(ap, const char *);
            put_string(o, &sp, s ? s : "(null)");
            break;
        }
        case '%':
            put(o, '%');
            break;
        default:
            /* Unknown conversion: show it rather than guess its argument. */
            put(o, '%');
            put(o, conv);
            break;
        }
    }
    va_end(ap);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    char dummy;
    struct out o = { .buf = size > 0 ? buf : &dummy, .size = size };

    format(&o, fmt, ap);
    if (size > 0)
        buf[o.len < size ? o.len : size - 1] = '\0';
    return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return n;
}

int vprintf(const char *fmt, va_list ap)
{
    struct out o = { .buf = NULL };

    format(&o, fmt, ap);
    return (int)o.len;
}

int printf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int puts(const char *s)
{
    return printf("%s\n", s);
}
