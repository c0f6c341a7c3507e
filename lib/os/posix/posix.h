/*
 * posix.h: helpers shared by the files of the POSIX platform layer
 * (lib/os/posix/).  Nothing outside lib/os/posix/ includes it.
 */
#ifndef PBP_OS_POSIX_H
#define PBP_OS_POSIX_H

#include "pbp_config.h"

#include "os/os.h"

/* Sets FD_CLOEXEC, and O_NONBLOCK if nonblock; *was_blocking (if not
 * NULL) says whether the fd was in blocking mode.  0 or PBP_ESYS. */
int pbp__fd_prepare(int fd, int nonblock, int *was_blocking, pbp_error *err);
/* Asks for a pipe capacity of size bytes if fd is a pipe.  Best effort: the
 * kernel may refuse (per-user pipe limits); the pipe then keeps its size.
 * A no-op without F_SETPIPE_SZ (PBP_HAVE_F_SETPIPE_SZ). */
void pbp__fd_pipe_size(int fd, int size);
/* Creates a pipe whose ends are both close-on-exec: pipe2(O_CLOEXEC) where
 * the platform has it (PBP_HAVE_PIPE2), else pipe() then FD_CLOEXEC (see
 * io.c for that fallback's window).  0, or PBP_ESYS with fds untouched. */
int pbp__pipe_cloexec(int fds[2], pbp_error *err);
/* pidfd_open(pid, 0) (watch.c): the libc wrapper, else the system call by
 * number; -1 with errno ENOSYS where neither was built in.  Every pidfd
 * is close-on-exec. */
int pbp__pidfd_open(pid_t pid);
/* Closes *fd unless it is -1, then sets it to -1.  Never retries after
 * EINTR (the fd is gone on Linux).  Preserves errno.  Returns 0, or the
 * errno close() reported. */
int pbp__close(int *fd);

/* Until the child side moves onto pbp__os_aux: the transport watches fd
 * and calls drain(arg) while it waits (0 once fd reached its end). */
void pbp__os_io_set_aux_fd(pbp__os_io *io, int fd, int (*drain)(void *), void *arg);

/* The aux's fd while it is open, -1 once its end was seen (or a is NULL):
 * what a wait polls before calling pbp__os_aux_drain (aux.c). */
int pbp__os_aux_fd(const pbp__os_aux *a);

/* The child's environment (env.c): envp (NULL: ours) without any
 * PBPIPE_PARENT_PID, plus PBPIPE_PARENT_PID=<getpid()> written into entry
 * (size bytes; 40 are enough).  A new array to free(); its strings are
 * envp's and entry.  NULL when out of memory. */
char **pbp__env_with_parent(char *const *envp, char *entry, size_t size);

#endif /* PBP_OS_POSIX_H */
