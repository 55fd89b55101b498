/*
 * hello: the monitor's first test guest.
 *
 * Arguments: any words.  If the first one is a number, it is the exit
 * status (0 otherwise).
 *
 * Output:
 *   hello from ftvm guest
 *   boot abi=1 mem_size=N image_end=0x...
 *   argc=N
 *   argv[0]=hello
 *   argv[1]=...                  (one line per argument)
 *   exit status=S
 */
#include "ftvm.h"

int main(int argc, char **argv)
{
    int64_t status = 0;

    printf("hello from ftvm guest\n");
    printf("boot abi=%lu mem_size=%lu image_end=%#lx\n",
           (unsigned long)ftvm_boot.abi_version,
           (unsigned long)ftvm_boot.mem_size,
           (unsigned long)ftvm_boot.image_end);
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    if (argc > 1 && ftvm_parse_i64(argv[1], &status) != 0)
        status = 0;
    printf("exit status=%d\n", (int)status);
    return (int)status;
}
