mod amplification;
mod message_layer;
mod observe;
mod pair;
mod reliable;
