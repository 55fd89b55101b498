/*
 * secondary: `ftvm secondary --listen ADDR:PORT`, the standby end of
 * replication (docs/replication.md): it keeps the primary's VM as a RAM
 * cache, fails over when the primary dies or an operator says so, and from
 * then on runs the VM as `ftvm run` does.
 */
#ifndef FTVM_TOOLS_SECONDARY_H
#define FTVM_TOOLS_SECONDARY_H

/*
 * Exit statuses before a failover (after one, those of `ftvm run`: the
 * guest's halt status, 121, 122, 128+N).
 */
enum {
    SEC_EXIT_CLEAN = 0,         /* replication stopped, no failover */
    SEC_EXIT_USAGE = 2,
    SEC_EXIT_NOTHING = 3,       /* the primary died before checkpoint 1 */
    SEC_EXIT_REFUSED = 4,       /* the primary's stream was refused */
};

/* argv[0] is "secondary"; returns the exit status. */
int secondary_main(int argc, char **argv);

#endif
