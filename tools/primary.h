/*
 * primary: `ftvm primary GUEST.elf [ARGS...] --secondary HOST:PORT`, a
 * guest run as `ftvm run` runs it and replicated to a secondary
 * (docs/replication.md), its console on stdout through output commit.
 */
#ifndef FTVM_TOOLS_PRIMARY_H
#define FTVM_TOOLS_PRIMARY_H

/* argv[0] is "primary"; returns the exit status (as ftvm run's). */
int primary_main(int argc, char **argv);

#endif
