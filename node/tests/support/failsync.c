/*
 * Fault injection for tests, loaded with LD_PRELOAD: once the file named by FAILSYNC_TRIGGER
 * exists, every fsync, fdatasync and sync_file_range fails with EIO, as on a disk whose
 * write-back failed. Before that they are the C library's own. Built by the tests with the
 * C compiler that links Rust programs (`cc`), so it needs nothing the toolchain lacks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

static int tripped(void) {
    const char *path = getenv("FAILSYNC_TRIGGER");
    return path != NULL && access(path, F_OK) == 0;
}

int fsync(int fd) {
    static int (*real)(int);
    if (tripped()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (tripped()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    }
    return real(fd);
}

int sync_file_range(int fd, off64_t offset, off64_t nbytes, unsigned int flags) {
    static int (*real)(int, off64_t, off64_t, unsigned int);
    if (tripped()) {
        errno = EIO;
        return -1;
    }
    if (real == NULL) {
        real = (int (*)(int, off64_t, off64_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
    }
    return real(fd, offset, nbytes, flags);
}
