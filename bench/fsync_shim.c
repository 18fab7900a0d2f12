/*
 * LD_PRELOAD shim: make fsync() and fdatasync() cost what they cost on a
 * real disk. Each call sleeps FSYNC_DELAY_US microseconds (default 2000)
 * and then calls the real function found with dlsym(RTLD_NEXT).
 *
 *   gcc -shared -fPIC -O2 -o fsync_shim.so fsync_shim.c -ldl
 *   LD_PRELOAD=./fsync_shim.so FSYNC_DELAY_US=2000 some-server
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

typedef int (*sync_fn)(int);

static void delay(void)
{
    const char *env = getenv("FSYNC_DELAY_US");
    long us = env ? atol(env) : 2000;
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };

    if (us > 0)
        nanosleep(&ts, NULL);
}

static int call_real(const char *name, int fd)
{
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);

    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(fd);
}

int fsync(int fd)
{
    delay();
    return call_real("fsync", fd);
}

int fdatasync(int fd)
{
    delay();
    return call_real("fdatasync", fd);
}
