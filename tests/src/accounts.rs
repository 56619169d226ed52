//! Accounts for tests: signing up through the API as a browser would, and
//! giving roles the way an admin (or the database) does.

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::app::TestApp;

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub token: String,
    pub username: String,
}

impl TestApp {
    /// Signs up `username` (email `username@test.io`, password `password-<username>`).
    pub async fn sign_up(&self, username: &str) -> TestUser {
        let data = self
            .data(
                None,
                "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id: rowId username } } }",
                json!({ "input": { "email": format!("{username}@test.io"), "username": username, "password": format!("password-{username}"), "fullName": username } }),
            )
            .await;
        TestUser {
            id: data["signUp"]["user"]["id"].as_str().unwrap_or_default().to_owned(),
            token: data["signUp"]["token"].as_str().unwrap_or_default().to_owned(),
            username: username.to_owned(),
        }
    }

    /// Signs up `username` and gives it `role` (admin, service, reader) directly in the database.
    pub async fn sign_up_as(&self, username: &str, role: &str) -> TestUser {
        let user = self.sign_up(username).await;
        self.db
            .execute_unprepared(&format!("UPDATE users SET role = '{role}' WHERE id = '{}'", user.id))
            .await
            .expect("running UPDATE users");
        user
    }

    /// Gives `user` a new role as an admin would, through `setUserRole`.
    pub async fn set_role(&self, admin: &TestUser, user: &TestUser, role: &str) {
        let set =
            "mutation($id: ID!, $role: Role!) { setUserRole(input: {userId: $id, role: $role}) { user { role } } }";
        self.data(Some(&admin.token), set, json!({ "id": user.id, "role": role })).await;
    }
}
