pub mod ser2net;
