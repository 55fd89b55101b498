/*
 * Number and argument parsing, and the PRNG.
 */
#include "ftvm.h"

uint64_t ftvm_strtou64(const char *s, const char **end, int base,
                       bool *overflow)
{
    uint64_t v = 0;
    bool over = false;

    if (base == 0) {
        base = 10;
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
            base = 16;
            s += 2;
        }
    }
    for (;; s++) {
        int d;

        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'z')
            d = *s - 'a' + 10;
        else if (*s >= 'A' && *s <= 'Z')
            d = *s - 'A' + 10;
        else
            break;
        if (d >= base)
            break;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
            over = true;
        v = over ? UINT64_MAX : v * (uint64_t)base + (uint64_t)d;
    }
    if (end)
        *end = s;
    if (overflow)
        *overflow = over;
    return v;
}

int ftvm_parse_u64(const char *s, uint64_t *out)
{
    const char *end;
    bool over;

    if (*s < '0' || *s > '9')
        return -1;
    *out = ftvm_strtou64(s, &end, 0, &over);
    return (*end != '\0' || over) ? -1 : 0;
}

int ftvm_parse_i64(const char *s, int64_t *out)
{
    bool negative = *s == '-';
    uint64_t mag;

    if (ftvm_parse_u64(negative ? s + 1 : s, &mag) != 0)
        return -1;
    if (mag > (negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return -1;
    *out = negative ? (int64_t)(0 - mag) : (int64_t)mag;
    return 0;
}

int atoi(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    bool negative = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    uint64_t v = ftvm_strtou64(s, NULL, 10, NULL);
    return (int)(negative ? 0 - v : v);
}

/* The length of the key of a key=value word, or 0 for a word with no '='. */
static size_t key_len(const char *word)
{
    const char *eq = strchr(word, '=');

    return eq ? (size_t)(eq - word) : 0;
}

const char *ftvm_arg(int argc, char **argv, const char *key)
{
    size_t n = strlen(key);
    const char *value = NULL;

    for (int i = 1; i < argc; i++)
        if (key_len(argv[i]) == n && strncmp(argv[i], key, n) == 0)
            value = argv[i] + n + 1;
    return value;
}

int ftvm_arg_u64(int argc, char **argv, const char *key, uint64_t def,
                 uint64_t min, uint64_t max, uint64_t *out)
{
    const char *s = ftvm_arg(argc, argv, key);

    *out = def;
    if (s == NULL)
        return 0;
    if (ftvm_parse_u64(s, out) != 0 || *out < min || *out > max) {
        printf("%s: %s=%s: want a number from %lu to %lu\n", argv[0], key, s,
               (unsigned long)min, (unsigned long)max);
        return -1;
    }
    return 0;
}

int ftvm_args_check(int argc, char **argv, const char *const *known)
{
    int bad = 0;

    for (int i = 1; i < argc; i++) {
        size_t n = key_len(argv[i]);
        const char *const *k;

        for (k = known; *k != NULL; k++)
            if (n > 0 && strlen(*k) == n && strncmp(argv[i], *k, n) == 0)
                break;
        if (*k == NULL) {
            printf("%s: unknown argument '%s'\n", argv[0], argv[i]);
            bad = -1;
        }
    }
    return bad;
}

void ftvm_rng_seed(struct ftvm_rng *rng, uint64_t seed)
{
    /* xorshift is stuck at zero; any other state is fine. */
    rng->state = seed != 0 ? seed : 0x9E3779B97F4A7C15ull;
}

uint64_t ftvm_rng_next(struct ftvm_rng *rng)
{
    uint64_t x = rng->state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng->state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t ftvm_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

uint64_t ftvm_rdtsc(void)
{
    uint32_t lo, hi;

    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
