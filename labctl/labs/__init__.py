"""Labs labctl builds on this machine: network namespaces with their own sshd (netns), QEMU
VMs booting Debian's kernel (vm, from an image: image), and what both record and undo
(base)."""
