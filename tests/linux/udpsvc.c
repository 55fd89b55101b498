/*
 * udpsvc: the Linux test guest's UDP service (scripts/linux-guest.sh puts
 * it in the initramfs, static).  `udpsvc PORT` answers each datagram
 * "ID ..." with "ID ok N", N counting the requests served since it
 * started, so a test sees every request served once and, across a
 * checkpoint, the count going on.
 */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    unsigned long served = 0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    a.sin_port = htons(argc > 1 ? (unsigned short)atoi(argv[1]) : 7777);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("udpsvc");
        return 1;
    }
    printf("udpsvc: listening on %u\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        char req[512], resp[600];
        struct sockaddr_in from;
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(fd, req, sizeof(req) - 1, 0,
                             (struct sockaddr *)&from, &flen);
        if (n < 0)
            continue;
        req[n] = 0;
        size_t id = strcspn(req, " \n");
        int len = snprintf(resp, sizeof(resp), "%.*s ok %lu", (int)id, req,
                           ++served);
        sendto(fd, resp, (size_t)len, 0, (struct sockaddr *)&from, flen);
    }
}
