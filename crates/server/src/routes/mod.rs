pub mod auth;
pub mod chat;
pub mod generate;
pub mod health;
pub mod speech;
pub mod ui;
pub mod voices;
