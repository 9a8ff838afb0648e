/* The sandbox ("pause") process of every pod in the test cluster: holds the pod's namespaces,
 * reaps zombies, exits on SIGINT/SIGTERM. The same job as Kubernetes' build/pause/linux/pause.c,
 * built here statically so the image is FROM scratch and needs no registry. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    printf("lucid-pause 1.0\n");
    return 0;
  }
  if (getpid() != 1) fprintf(stderr, "warning: pause should be the first process\n");
  struct sigaction stop_action = {.sa_handler = stop};
  struct sigaction reap_action = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
  if (sigaction(SIGINT, &stop_action, NULL) < 0 || sigaction(SIGTERM, &stop_action, NULL) < 0 ||
      sigaction(SIGCHLD, &reap_action, NULL) < 0)
    return 1;
  for (;;) pause();
}
