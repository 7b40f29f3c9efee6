/* Starts RATE processes per second (/bin/true) for SECS seconds; prints how many it started. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv) {
  long rate = argc > 1 ? atol(argv[1]) : 1000, secs = argc > 2 ? atol(argv[2]) : 10;
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  long started = 0, total = rate * secs;
  while (started < total) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9;
    if (started >= el * rate) { usleep(200); continue; }
    pid_t p = fork();
    if (p == 0) { execl("/bin/true", "true", (char *)0); _exit(127); }
    if (p > 0) { started++; waitpid(p, 0, 0); }
  }
  clock_gettime(CLOCK_MONOTONIC, &now);
  printf("%ld %.2f\n", started, (now.tv_sec - t0.tv_sec) + (now.tv_nsec - t0.tv_nsec) / 1e9);
  return 0;
}
