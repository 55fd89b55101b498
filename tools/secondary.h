/* secondary: `ftvm secondary` (secondary/secondary.h). */
#ifndef FTVM_TOOLS_SECONDARY_H
#define FTVM_TOOLS_SECONDARY_H

/* argv[0] is "secondary"; returns the exit status. */
int secondary_main(int argc, char **argv);

#endif
