#include "machine/hostprobe.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#include "util/macro.h"

static int set_reason(char **ret_reason, const char *s) {
        if (ret_reason)
                *ret_reason = strdup(s);
        return 0;
}

/* Runs in a child so that a vCPU that never comes back cannot hang the caller. Exit 0 when the
 * guest wrote the expected byte to the probe port. */
static int kvm_guest_child(void) {
        int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (kvm < 0)
                return 2;
        if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
                return 3;
        int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
        if (vm < 0)
                return 4;
        size_t mem_size = 0x10000;
        unsigned char *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
                return 5;
        /* mov al, 0x5a ; out 0xe9, al ; hlt */
        static const unsigned char code[] = { 0xb0, 0x5a, 0xe6, 0xe9, 0xf4 };
        memcpy(mem + 0x1000, code, sizeof code);
        struct kvm_userspace_memory_region region = {
                .slot = 0, .guest_phys_addr = 0, .memory_size = mem_size, .userspace_addr = (unsigned long)mem,
        };
        if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
                return 6;
        int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
        if (vcpu < 0)
                return 7;
        int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
        if (run_size <= 0)
                return 8;
        struct kvm_run *run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
        if (run == MAP_FAILED)
                return 9;
        struct kvm_sregs sregs;
        if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0)
                return 10;
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0)
                return 11;
        struct kvm_regs regs = { .rip = 0x1000, .rflags = 0x2 };
        if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0)
                return 12;
        for (int i = 0; i < 4; i++) {
                if (ioctl(vcpu, KVM_RUN, 0) < 0)
                        return 13;
                if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT &&
                    run->io.port == 0xe9) {
                        unsigned char v = *((unsigned char *)run + run->io.data_offset);
                        return v == 0x5a ? 0 : 14;
                }
                if (run->exit_reason != KVM_EXIT_IO)
                        return 15;
        }
        return 16;
}

/* Which module backs /dev/kvm: ordinary guests need the hardware one (kvm_intel, kvm_amd).
 * kvm_pvm answers the KVM API and even runs simple real-mode code, but only PVM-enabled guest
 * kernels boot on it; ordinary ones hang (measured: Debian's cloud kernel under microvm). */
static int kvm_backend_reason(char **ret_reason) {
        if (access("/sys/module/kvm_intel", F_OK) == 0 || access("/sys/module/kvm_amd", F_OK) == 0)
                return 1;
        if (access("/sys/module/kvm_pvm", F_OK) == 0) {
                set_reason(ret_reason, "/dev/kvm does not run ordinary guests: it is backed by kvm_pvm, which boots only "
                                       "PVM-enabled kernels");
                return 0;
        }
        /* Built-in modules leave no trace in /sys/module: fall back to the CPU flags. */
        _cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
        char line[4096];
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "flags", 5) == 0)
                        return strstr(line, " vmx") || strstr(line, " svm") ? 1
                                                                          : (set_reason(ret_reason,
                                                                                        "/dev/kvm does not run ordinary "
                                                                                        "guests: the CPU shows no "
                                                                                        "vmx/svm"),
                                                                             0);
        return 1;
}

int host_probe_kvm(int timeout_ms, char **ret_reason) {
        if (access("/dev/kvm", R_OK | W_OK) < 0)
                return set_reason(ret_reason, errno == ENOENT ? "/dev/kvm does not exist" : "/dev/kvm is not accessible");
        if (kvm_backend_reason(ret_reason) == 0)
                return 0;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                _exit(kvm_guest_child());
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int status = 0;
        for (;;) {
                pid_t w = waitpid(pid, &status, WNOHANG);
                if (w == pid)
                        break;
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
                if (ms > timeout_ms) {
                        kill(pid, SIGKILL);
                        waitpid(pid, &status, 0);
                        return set_reason(ret_reason, "/dev/kvm does not run ordinary guests: the probe guest hung");
                }
                poll(NULL, 0, 5);
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 1;
        char buf[128];
        snprintf(buf, sizeof buf, "/dev/kvm does not run ordinary guests: the probe guest failed (step %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        return set_reason(ret_reason, buf);
}

char *host_find_qemu(void) {
        const char *names[] = { "qemu-system-x86_64", "qemu-system-aarch64" };
#if defined(__aarch64__)
        const char *name = names[1];
#else
        const char *name = names[0];
#endif
        const char *path = getenv("PATH");
        _cleanup_free_ char *copy = strdup(path ? path : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                char *p = NULL;
                if (asprintf(&p, "%s/%s", d, name) < 0)
                        return NULL;
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

int host_probe_ns(char **ret_reason) {
        if (geteuid() != 0) {
                set_reason(ret_reason, "the apiserver is not running as root");
                return 0;
        }
        _cleanup_fclose_ FILE *f = fopen("/proc/filesystems", "re");
        bool overlay = false;
        char line[256];
        while (f && fgets(line, sizeof line, f))
                if (strstr(line, "\toverlay\n"))
                        overlay = true;
        if (!overlay && access("/sys/module/overlay", F_OK) < 0) {
                set_reason(ret_reason, "the kernel has no overlayfs");
                return 0;
        }
        if (access("/proc/self/ns/pid", F_OK) < 0 || access("/proc/self/ns/cgroup", F_OK) < 0) {
                set_reason(ret_reason, "the kernel lacks pid or cgroup namespaces");
                return 0;
        }
        return 1;
}
