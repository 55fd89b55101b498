/* bytebuf: see bytebuf.h. */
#include "daemon/bytebuf.h"

#include <stdlib.h>
#include <string.h>

bool bytebuf_add(bytebuf *b, const void *data, size_t n, size_t max)
{
    if (n > max || b->len > max - n)
        return false;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return false;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return true;
}

void bytebuf_drop(bytebuf *b, size_t n)
{
    if (n > b->len)
        n = b->len;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void bytebuf_free(bytebuf *b)
{
    free(b->data);
    *b = (bytebuf){ 0 };
}
