/* What this host can run. The vm runtime needs hardware virtualization that really runs an
 * ordinary guest: a /dev/kvm node is not proof (nested PVM hosts have one that hangs ordinary
 * kernels), so the probe boots a few instructions of real-mode code and waits for them. */
#pragma once

#include <stdbool.h>

/* 1 = a guest ran under KVM, 0 = not usable (reason says why), <0 = probe error. */
int host_probe_kvm(int timeout_ms, char **ret_reason);
/* Path of the QEMU system emulator for this architecture, or NULL. */
char *host_find_qemu(void);
/* 1 = the ns runtime's needs are present (overlayfs, namespaces, root), else 0 + reason. */
int host_probe_ns(char **ret_reason);
