/* primary: `ftvm primary` (primary/primary.h). */
#ifndef FTVM_TOOLS_PRIMARY_H
#define FTVM_TOOLS_PRIMARY_H

/* argv[0] is "primary"; returns the exit status. */
int primary_main(int argc, char **argv);

#endif
