/*
 * jobs_cli.h -- `agentd submit` and `agentd jobs`: the client side of the
 * Redis job queue (docs/workers.md). Neither needs a config or a model.
 */
#ifndef AD_JOBS_CLI_H
#define AD_JOBS_CLI_H

/* argv[0] is "submit" or "jobs". Returns the exit status:
 *   submit: 0 queued (with --wait: the job answered); 1 Redis failed, or
 *           the job failed; 2 usage error, or the job id is taken by another
 *           prompt or session; 3 the job reached max_steps; 4 the job was
 *           dead-lettered; 130 interrupted while waiting (the job goes on)
 *   jobs:   0 ok; 1 Redis failed; 2 usage error or an unknown job */
int ad_jobs_cli(int argc, char **argv);

/* A prompt given on standard input (agentd, agentd submit): all of it,
 * trailing newlines dropped; NULL when it is larger than
 * AD_CLI_PROMPT_MAX bytes (or on ENOMEM). Caller frees. */
#define AD_CLI_PROMPT_MAX (64u << 20)
char *ad_cli_read_prompt(void);

#endif /* AD_JOBS_CLI_H */
