/* b64: see b64.h.  The coding is OpenSSL's (EVP_EncodeBlock,
 * EVP_DecodeBlock); this module only gives it protobuf's JSON rules. */
#include "witness/b64.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *b64_encode(const uint8_t *p, size_t n)
{
    if (n > (size_t)INT32_MAX / 4 * 3 - 3)
        return NULL;
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

int b64_decode(const char *s, size_t max, uint8_t **out, size_t *len)
{
    /*
     * Protobuf's JSON parsers take either alphabet, padded or not;
     * OpenSSL takes the standard one, padded: translate first.  '=' may
     * only end the text, and a lone last character carries no byte.
     */
    size_t n = strcspn(s, "=");
    if (strspn(s + n, "=") != strlen(s + n) || strlen(s + n) > 2 ||
        n % 4 == 1 || n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0) > max ||
        n > (size_t)INT32_MAX / 2)
        return -1;
    size_t padded = (n + 3) / 4 * 4;
    char *std = malloc(padded + 1);
    uint8_t *buf = malloc(padded / 4 * 3 + 1);
    int r = -1;
    if (std && buf) {
        for (size_t i = 0; i < n; i++)
            std[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
        memset(std + n, '=', padded - n);
        std[padded] = '\0';
        /* OpenSSL would skip blanks around the text: none are base64. */
        if (strspn(std, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789+/=") == padded)
            r = EVP_DecodeBlock(buf, (const unsigned char *)std,
                                (int)padded);
    }
    free(std);
    if (r < 0) {
        free(buf);
        return -1;
    }
    /* It decodes whole quanta: the padding's bytes are not data. */
    *out = buf;
    *len = (size_t)r - (padded - n);
    return 0;
}
