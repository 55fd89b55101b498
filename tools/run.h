/* run and restore: `ftvm run` and `ftvm restore` (daemon/vmrun.h). */
#ifndef FTVM_TOOLS_RUN_H
#define FTVM_TOOLS_RUN_H

/* argv[0] is "run"; returns the exit status. */
int run_main(int argc, char **argv);
/* argv[0] is "restore": the same, from a checkpoint file. */
int restore_main(int argc, char **argv);

#endif
