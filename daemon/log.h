/*
 * log: every message an ftvm process has for a person, one line on stderr
 * that begins with who says it ("ftvm primary: ...").  main sets who once;
 * everything else only says what it has to say.
 */
#ifndef FTVM_DAEMON_LOG_H
#define FTVM_DAEMON_LOG_H

/* Sets who speaks ("ftvm run", "ftvmctl"); who must outlive its use. */
void log_init(const char *who);
/* Who speaks: "ftvm" until log_init. */
const char *log_who(void);
/*
 * "WHO: text\n" on stderr in one write, at once, or not at all when
 * stderr has no room now (a pipe nobody reads): logging never waits.
 * Lines are cut at PIPE_BUF bytes.
 */
__attribute__((format(printf, 1, 2)))
void log_msg(const char *fmt, ...);

#endif
