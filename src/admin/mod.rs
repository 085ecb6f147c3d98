pub mod udev;
